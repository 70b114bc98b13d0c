#!/usr/bin/env bash
# Run HERE (the development machine), after `scripts/cuda/build.sh --bin tealight`: packs the CUDA
# binary for the GPU machine as target/gpu/tealight.xz and checks that the working tree plus that
# folder fit the 64 MiB a device run carries.
#
#   scripts/gpu/pack.sh [BINARY]       # default: release/tealight under $TEALIGHT_CUDA_TARGET_DIR (~/.cache/tealight/target-cuda)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
BIN="${1:-${TEALIGHT_CUDA_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tealight/target-cuda}/release/tealight}"
[[ -x "$BIN" ]] || { echo "pack.sh: no binary at $BIN (run scripts/cuda/build.sh --bin tealight)" >&2; exit 1; }
readelf -d "$BIN" | grep -q 'libcuda.so' || { echo "pack.sh: $BIN is not a cuda build" >&2; exit 1; }
mkdir -p target/gpu
rm -f target/gpu/tealight target/gpu/tealight.xz
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
cp "$BIN" "$tmp"
strip --strip-unneeded "$tmp" 2>/dev/null || true
xz -9e -T0 -c "$tmp" >target/gpu/tealight.xz
printf 'pack.sh: %s (%s) -> target/gpu/tealight.xz (%s)\n' "$BIN" "$(du -h "$BIN" | cut -f1)" \
  "$(du -h target/gpu/tealight.xz | cut -f1)"

# What a device run sends: tracked + untracked-not-ignored files, plus the carried folder.
tree_bytes="$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
  awk '{s += $1} END {print s + 0}')"
carried="$(stat -c %s target/gpu/tealight.xz)"
total=$((tree_bytes + carried))
limit=$((64 * 1024 * 1024))
printf 'pack.sh: working tree %d MiB + target/gpu %d MiB = %d MiB of %d MiB\n' \
  $((tree_bytes >> 20)) $((carried >> 20)) $((total >> 20)) $((limit >> 20))
if ((total > limit)); then
  echo "pack.sh: too large for one device run" >&2
  exit 1
fi
