#!/usr/bin/env bash
# Run HERE (the development machine), after `scripts/cuda/build.sh --bin tealight`: packs the CUDA
# binary for the GPU machine as target/gpu/tealight.xz and checks that the working tree plus what
# is carried (target/gpu, .whl) fit in 56 MiB (a device run carries at most 64 MiB).
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

# What a device run sends: tracked + untracked-not-ignored files, plus the carried folders
# (target/gpu, and .whl from scripts/gpu/fetch-wheels.sh). The device limit is 64 MiB; this
# project keeps 8 MiB of it spare.
tree_bytes="$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
  awk '{s += $1} END {print s + 0}')"
binary="$(stat -c %s target/gpu/tealight.xz)"
wheels="$(find .whl -type f -name '*.whl' -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}')"
total=$((tree_bytes + binary + wheels))
limit=$((56 * 1024 * 1024))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
printf 'pack.sh: working tree %s + target/gpu %s + .whl %s = %s of %s\n' "$(mib "$tree_bytes")" \
  "$(mib "$binary")" "$(mib "$wheels")" "$(mib "$total")" "$(mib "$limit")"
[[ "$wheels" -gt 0 ]] || echo "pack.sh: no .whl/ (scripts/gpu/fetch-wheels.sh): first-contact.sh stage a needs the openai SDK" >&2
if ((total > limit)); then
  echo "pack.sh: too large for one device run" >&2
  exit 1
fi
