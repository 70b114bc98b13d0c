#!/usr/bin/env bash
# Shared setup of the GPU-machine scripts (sourced by check.sh and bench.sh).
#
# The GPU machine has the NVIDIA driver, CUDA 13.0, and a Python with torch and transformers, but
# no Rust toolchain and no network. The tealight binary is built on a development machine
# (scripts/cuda/build.sh --bin tealight) and carried in, compressed, by scripts/gpu/pack.sh:
#   target/gpu/tealight.xz   (or an uncompressed target/gpu/tealight, or $TEALIGHT_BIN)
#
# After `gpu_setup`: $TL (the binary), $PY (python with torch), $WORK (scratch),
# LD_LIBRARY_PATH holding the folders of the CUDA libraries the binary needs (never a stub).

GPU_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$GPU_LIB_DIR/../.." && pwd)"
WORK="${TEALIGHT_GPU_WORK:-/tmp/tealight-gpu}"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The tealight binary: $TEALIGHT_BIN, else target/gpu/tealight (unpacked from tealight.xz).
find_binary() {
  if [[ -n "${TEALIGHT_BIN:-}" ]]; then
    [[ -x "$TEALIGHT_BIN" ]] || die "TEALIGHT_BIN=$TEALIGHT_BIN is not executable"
    TL="$TEALIGHT_BIN"
    return
  fi
  local dir="$REPO/target/gpu"
  if [[ -f "$dir/tealight.xz" ]]; then
    mkdir -p "$WORK"
    if command -v xz >/dev/null 2>&1; then
      xz -dc "$dir/tealight.xz" >"$WORK/tealight"
    else
      "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$dir/tealight.xz" "$WORK/tealight"
    fi
    chmod +x "$WORK/tealight"
    TL="$WORK/tealight"
  elif [[ -x "$dir/tealight" ]]; then
    TL="$dir/tealight"
  elif [[ -x "${TEALIGHT_CUDA_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tealight/target-cuda}/release/tealight" ]]; then
    TL="${TEALIGHT_CUDA_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tealight/target-cuda}/release/tealight"
  else
    die "no tealight binary: build it with scripts/cuda/build.sh --bin tealight, pack it with scripts/gpu/pack.sh, and carry target/gpu"
  fi
}

find_python() {
  for p in "${PYTHON:-}" python3 /opt/torch/.venv/bin/python3 python; do
    [[ -n "$p" ]] || continue
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch, transformers, numpy' >/dev/null 2>&1; then
      PY="$(command -v "$p")"
      return
    fi
  done
  die "no python with torch, transformers and numpy"
}

# Folders that may hold the CUDA 13 runtime libraries: the torch venv's nvidia/cu13/lib (and
# nvidia/*/lib), /usr/local/cuda*/lib64. Stub folders are never used: at run time the driver's
# libcuda.so.1 must be the one loaded.
cuda_lib_candidates() {
  "$PY" - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    for root in nvidia.__path__:
        for d in [os.path.join(root, "cu13", "lib")] + sorted(glob.glob(os.path.join(root, "*", "lib"))):
            if os.path.isdir(d):
                print(d)
except ImportError:
    pass
PY
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu; do
    [[ -d "$d" ]] && printf '%s\n' "$d"
  done
}

# Adds to LD_LIBRARY_PATH the folder of each library `ldd` cannot find.
setup_libraries() {
  local missing lib dir found candidates
  mapfile -t candidates < <(cuda_lib_candidates | grep -v '/stubs' | awk '!seen[$0]++')
  for _ in 1 2 3; do
    mapfile -t missing < <(ldd "$TL" | awk '/not found/ {print $1}')
    [[ ${#missing[@]} -eq 0 ]] && break
    for lib in "${missing[@]}"; do
      found=""
      for dir in "${candidates[@]}"; do
        if [[ -e "$dir/$lib" ]]; then found="$dir"; break; fi
      done
      if [[ -n "$found" ]]; then
        case ":${LD_LIBRARY_PATH:-}:" in *":$found:"*) ;; *) export LD_LIBRARY_PATH="$found${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
      else
        log "warning: $lib not found in: ${candidates[*]}"
      fi
    done
  done
  if ldd "$TL" | grep -q 'not found'; then
    ldd "$TL" >&2
    die "the binary still misses libraries (above)"
  fi
  if ldd "$TL" | grep libcuda.so | grep -q stubs; then
    die "libcuda resolves to a stub: $(ldd "$TL" | grep libcuda)"
  fi
  log "libraries: $(ldd "$TL" | awk '/libcuda|libcublas|libcurand|libcudart|libnvrtc/ {print $1 "=>" $3}' | tr '\n' ' ')"
}

gpu_setup() {
  find_python
  find_binary
  setup_libraries
  mkdir -p "$WORK"
  log "binary: $TL ($("$TL" --version 2>/dev/null || echo '?'))"
  log "python: $PY (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true
  fi
}

# A random-weight Qwen3 checkpoint of a real shape (0.6b | 4b | tiny), made once per machine.
checkpoint() {
  local shape="$1" dir="$WORK/qwen3-$1"
  if [[ ! -f "$dir/config.json" ]]; then
    log "making the $shape checkpoint in $dir"
    "$PY" "$GPU_LIB_DIR/make_checkpoint.py" --shape "$shape" --out "$dir" >&2 ||
      die "could not make the $shape checkpoint"
  fi
  printf '%s\n' "$dir"
}
