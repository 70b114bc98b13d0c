#!/usr/bin/env bash
# Builds tealight with the `cuda` feature against the CUDA 13.0 toolchain made by
# setup-toolchain.sh (run here first, reused when present). Works without a GPU.
#
#   scripts/cuda/build.sh                      # cargo build --release --features cuda
#   scripts/cuda/build.sh --bin tealight       # extra arguments go to cargo build
#   scripts/cuda/build.sh --tests
#
# Target dir: $TEALIGHT_CUDA_TARGET_DIR, default ~/.cache/tealight/target-cuda: outside the clone, so
# a fresh clone on the same machine (CI reruns, worktrees) reuses the ~15-minute cold build.
# Prints each built executable with its size and `ldd`. Exits non-zero when the build fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${TEALIGHT_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tealight/cuda}"
export TEALIGHT_CUDA_CACHE="$CACHE"
export CARGO_TARGET_DIR="${TEALIGHT_CUDA_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tealight/target-cuda}"

"$HERE/setup-toolchain.sh" >/dev/null
# shellcheck source=/dev/null
source "$CACHE/env.sh"

cd "$REPO"
printf 'build.sh: cargo build --release --features cuda %s (target dir %s)\n' "$*" "$CARGO_TARGET_DIR" >&2
messages="$(mktemp)"
trap 'rm -f "$messages"' EXIT
# Human-readable diagnostics go to stderr; the JSON messages name the executables built.
cargo build --release --features cuda --message-format=json-render-diagnostics "$@" >"$messages"

mapfile -t exes < <(grep -o '"executable":"[^"]*"' "$messages" | sed 's/^"executable":"//; s/"$//' | sort -u)
if [[ ${#exes[@]} -eq 0 ]]; then
  echo "build.sh: build finished; no executable among its outputs" >&2
  exit 0
fi
for exe in "${exes[@]}"; do
  printf '\n%s (%s)\n' "$exe" "$(du -h "$exe" | cut -f1)"
  # With the build's library path the wheels' libraries resolve; libcuda.so.1 shows "not found"
  # here on purpose: the stub is libcuda.so, only the GPU machine's driver provides libcuda.so.1.
  ldd "$exe"
done
