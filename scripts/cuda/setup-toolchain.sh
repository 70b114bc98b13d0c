#!/usr/bin/env bash
# Creates (or reuses) the CUDA 13.0 build toolchain for `cargo build --features cuda` on a machine
# with no GPU and no CUDA install:
#   - NVIDIA's CUDA 13.0 wheels from PyPI, every piece pinned (dependencies included), in a venv;
#   - unversioned .so symlinks for the libraries the link needs;
#   - a link-time libcuda.so stub (soname libcuda.so.1) defining every driver function cudarc declares.
# Writes "$CACHE/env.sh" (source it before building) and prints it.
#
# Cache: $TEALIGHT_CUDA_CACHE, default ~/.cache/tealight/cuda (outside the clone, shared by every
# checkout on the machine). The toolchain is reused while the pins
# are unchanged (stamp file); the stub is rebuilt when cudarc's declarations change.
# Run-time note: the stub is only ever a link input. Never put "$CU13/lib" on a GPU machine's
# library path: there the driver's real libcuda.so.1 must be the one loaded.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${TEALIGHT_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tealight/cuda}"
PYTHON="${PYTHON:-python3}"

# CUDA 13.0 to match the GPU machines' driver 580: PTX from a newer nvcc does not load on it.
# nvidia-nvvm and nvidia-cuda-crt must be pinned too: left free they resolve to a newer release
# whose PTX the 13.0 ptxas rejects ("Unsupported .version").
PINS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
)
# Link name -> versioned file shipped by the wheels.
LINKS=(
  libcublas.so:libcublas.so.13
  libcublasLt.so:libcublasLt.so.13
  libcudart.so:libcudart.so.13
  libnvrtc.so:libnvrtc.so.13
  libcurand.so:libcurand.so.10
)

log() { printf 'setup-toolchain: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
VENV="$CACHE/venv"
STAMP="$CACHE/toolchain.stamp"
ENV_FILE="$CACHE/env.sh"

# One setup at a time per cache (CI jobs or two shells sharing it).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/.lock"
  flock 9
fi

want_stamp="$(printf '%s\n' "python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" "${PINS[@]}")"

find_cu13() {
  local d
  for d in "$VENV"/lib/python3*/site-packages/nvidia/cu13; do
    [[ -d "$d/bin" ]] && { printf '%s\n' "$d"; return 0; }
  done
  return 1
}

# --- 1. the wheels ------------------------------------------------------------------------------
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" ]] && find_cu13 >/dev/null; then
  log "wheels: reusing $VENV"
else
  log "wheels: installing ${#PINS[@]} pinned CUDA 13.0 packages into $VENV (about 1.3 GB)"
  rm -rf "$VENV" "$STAMP" "$CACHE/stub.stamp"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
    --only-binary=:all: "${PINS[@]}"
  # Every installed nvidia-* distribution must be one of the pins: a new transitive dependency
  # would otherwise come in at whatever version is newest.
  unpinned="$("$VENV/bin/python" - "${PINS[@]}" <<'PY'
import sys
from importlib import metadata
pins = {}
for p in sys.argv[1:]:
    name, ver = p.split("==")
    pins[name.lower().replace("_", "-")] = ver
for d in metadata.distributions():
    name = d.metadata["Name"].lower().replace("_", "-")
    if name.startswith("nvidia") and pins.get(name) != d.version:
        print(f"{name}=={d.version}")
PY
)"
  [[ -z "$unpinned" ]] || die "unpinned NVIDIA packages were installed: $unpinned (pin them in $0)"
  printf '%s\n' "$want_stamp" >"$STAMP"
fi

CU13="$(find_cu13)" || die "no nvidia/cu13 folder under $VENV"
[[ -x "$CU13/bin/nvcc" ]] || die "$CU13/bin/nvcc missing"

# --- 2. unversioned link names ------------------------------------------------------------------
for pair in "${LINKS[@]}"; do
  name="${pair%%:*}" target="${pair#*:}"
  [[ -e "$CU13/lib/$target" ]] || die "$CU13/lib/$target missing"
  ln -sfn "$target" "$CU13/lib/$name"
done

# --- 3. the libcuda.so link stub ----------------------------------------------------------------
# The names come from the cudarc that this crate resolves to (downloaded by cargo if needed).
CUDARC_DIR="$(cd "$REPO" && cargo metadata --format-version 1 --features cuda |
  "$PYTHON" -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(os.path.dirname(p["manifest_path"]))
        break
')" || true
[[ -n "$CUDARC_DIR" ]] || die "cudarc not found by 'cargo metadata --features cuda' in $REPO"
SYS_RS="$CUDARC_DIR/src/driver/sys/mod.rs"
[[ -f "$SYS_RS" ]] || die "$SYS_RS missing"

stub_want="$(sha256sum "$SYS_RS" "$0" | cut -d' ' -f1 | tr '\n' ' ')"
if [[ -f "$CU13/lib/libcuda.so" && -f "$CACHE/stub.stamp" && "$(cat "$CACHE/stub.stamp")" == "$stub_want" ]]; then
  log "libcuda stub: reusing $CU13/lib/libcuda.so"
else
  STUB_DIR="$CACHE/stub"
  mkdir -p "$STUB_DIR"
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$SYS_RS" | sed 's/^pub unsafe fn //' | sort -u >"$STUB_DIR/names.txt"
  count="$(wc -l <"$STUB_DIR/names.txt")"
  [[ "$count" -gt 100 ]] || die "only $count cu* functions found in $SYS_RS"
  {
    echo '/* Link-time stand-in for the CUDA driver library. Generated by scripts/cuda/setup-toolchain.sh */'
    echo '/* from cudarc'"'"'s src/driver/sys/mod.rs. Never load it: every call fails with */'
    echo '/* CUDA_ERROR_STUB_LIBRARY (34). */'
    while read -r name; do
      printf 'int %s(void) { return 34; }\n' "$name"
    done <"$STUB_DIR/names.txt"
  } >"$STUB_DIR/libcuda_stub.c"
  gcc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$STUB_DIR/libcuda.so" "$STUB_DIR/libcuda_stub.c"
  # In cu13/lib itself: cudarc's build script only searches lib/stubs if it existed on its first run.
  install -m 0755 "$STUB_DIR/libcuda.so" "$CU13/lib/libcuda.so"
  printf '%s\n' "$stub_want" >"$CACHE/stub.stamp"
  log "libcuda stub: $count functions -> $CU13/lib/libcuda.so"
fi

# --- 4. the build environment -------------------------------------------------------------------
cat >"$ENV_FILE" <<ENV
# CUDA 13.0 build environment for tealight; written by scripts/cuda/setup-toolchain.sh.
# For building only: LD_LIBRARY_PATH here holds the link stub's folder, wrong for running a binary.
export CU13='$CU13'
export CUDA_ROOT="\$CU13" CUDA_PATH="\$CU13" CUDA_HOME="\$CU13"
export PATH="\$CU13/bin:\$PATH"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="\$CU13/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export LD_LIBRARY_PATH="\$CU13/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV

log "toolchain ready: $("$CU13/bin/nvcc" --version | grep -o 'release [0-9.]*')"
log "source this before 'cargo build --features cuda' (scripts/cuda/build.sh does it):"
cat "$ENV_FILE"
