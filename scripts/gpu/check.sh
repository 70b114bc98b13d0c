#!/usr/bin/env bash
# Correctness of tealight on a CUDA GPU, for every attention backend. Runs on the GPU machine
# (see scripts/gpu/README.md for what to build and carry).
#
#   scripts/gpu/check.sh                  # all stages, Qwen3-0.6B and -4B shapes
#   scripts/gpu/check.sh --quick          # 0.6B shape only, fewer streams
#   scripts/gpu/check.sh kernels logits   # chosen stages
#
# Stages:
#   kernels  every own kernel against its CPU twin (27 cases: bf16/f16/f32, decode, prefill over a
#            cached prefix, mixed batches, head_dim 32/48/64/128/256, GQA up to 12), output poisoned
#            with NaN first; then one layer's attention timed, generic vs cuda.
#   logits   random-weight Qwen3-0.6B/4B checkpoints (transformers, on the GPU); tealight bf16 on
#            CUDA (prefill in chunks over the cache, then one decode step per position, three
#            prompts in one batch) against transformers bf16 and f32, per backend.
#   streams  64 concurrent greedy streams through the engine, each equal to its solo run
#            (f32: must all be equal; bf16: reported).
#   serve    `tealight serve --dtype f32` (the batch-invariant case, as in streams): 64 concurrent
#            HTTP completions vs solo, all identical; a server that never answers /health fails.
# Environment: TEALIGHT_BIN (binary), TEALIGHT_GPU_WORK (scratch, default /tmp/tealight-gpu),
# BACKENDS (default "generic cuda"), SHAPES (default "0.6b 4b"), PYTHON. Logs go to
# $OUT/check.log when $OUT is set. DEVICE=cpu BACKENDS="generic cpu" SHAPES=tiny runs the same
# pipeline on a CPU build (a smoke test of the scripts on a machine without a GPU).
# The stage_* functions are called indirectly ("stage_$stage").
# shellcheck disable=SC2329
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/gpu/lib.sh
source "$HERE/lib.sh"

QUICK=0
STAGES=()
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    kernels | logits | streams | serve) STAGES+=("$arg") ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown argument $arg" ;;
  esac
done
[[ ${#STAGES[@]} -eq 0 ]] && STAGES=(kernels logits streams serve)
BACKENDS="${BACKENDS:-generic cuda}"
DEVICE="${DEVICE:-cuda}"
STREAMS="${STREAMS:-64}"
if [[ $QUICK -eq 1 ]]; then SHAPES="${SHAPES:-0.6b}"; STREAMS=32; fi
SHAPES="${SHAPES:-0.6b 4b}"
STREAM_SHAPE="${SHAPES%% *}"

LOGDIR="${OUT:-$WORK}"
mkdir -p "$LOGDIR"
exec > >(tee -a "$LOGDIR/check.log") 2>&1

gpu_setup
declare -a SUMMARY=()
FAILED=0
record() { # stage result detail
  SUMMARY+=("$(printf '%-34s %-5s %s' "$1" "$2" "$3")")
  [[ "$2" == FAIL ]] && FAILED=1
}

stage_kernels() {
  log "== kernels: own CUDA kernels against their CPU twins"
  local bench=(--bench)
  [[ "$DEVICE" == cpu ]] && bench=()  # timings of the CPU twins mean nothing
  if "$TL" debug kernels --device "$DEVICE" "${bench[@]}"; then
    record "kernels vs CPU twins" PASS "27 cases"
  else
    record "kernels vs CPU twins" FAIL "see the table above"
  fi
}

stage_logits() {
  local shape ckpt prompts base backend got=() ok
  for shape in $SHAPES; do
    ckpt="$(checkpoint "$shape")" || { record "logits $shape" FAIL "no checkpoint"; continue; }
    prompts="$WORK/prompts-$shape.json"
    "$PY" -c 'import json, random, sys
random.seed(7)
json.dump([[random.randrange(151643) for _ in range(n)] for n in (300, 280, 260)], open(sys.argv[1], "w"))' "$prompts"
    got=()
    ok=1
    for backend in $BACKENDS; do
      base="$WORK/logits-$shape-$backend"
      log "== logits $shape: tealight bf16, attention $backend"
      if "$TL" debug logits --model "$ckpt" --device "$DEVICE" --dtype bf16 --attention-backend "$backend" \
        --prompts "$prompts" --prefill 64 --chunk 32 --out "$base"; then
        got+=("$backend=$base.npy")
      else
        record "logits $shape $backend" FAIL "tealight debug logits failed"
        ok=0
      fi
    done
    [[ ${#got[@]} -gt 0 ]] || continue
    log "== logits $shape: transformers bf16 and f32"
    local first="${got[0]#*=}"
    if ! "$PY" "$HERE/reference_logits.py" --model "$ckpt" --prompts "$prompts" \
      --rows "${first%.npy}.json" --out "$WORK/ref-$shape"; then
      record "logits $shape" FAIL "transformers reference failed"
      continue
    fi
    if "$PY" "$HERE/compare_logits.py" --ref "$WORK/ref-$shape" --label "$shape:" --got "${got[@]}"; then
      [[ $ok -eq 1 ]] && record "logits $shape vs transformers" PASS "$BACKENDS"
    else
      record "logits $shape vs transformers" FAIL "see the table above"
    fi
    rm -f "$WORK"/logits-"$shape"-*.npy "$WORK/ref-$shape".*.npy
  done
}

stage_streams() {
  local ckpt backend
  ckpt="$(checkpoint "$STREAM_SHAPE")" || { record streams FAIL "no checkpoint"; return; }
  for backend in $BACKENDS; do
    log "== streams: $STREAMS concurrent greedy streams vs solo, f32, attention $backend"
    if "$TL" debug streams --model "$ckpt" --device "$DEVICE" --dtype f32 --attention-backend "$backend" \
      --streams "$STREAMS" --max-tokens 32; then
      record "streams f32 $backend" PASS "$STREAMS identical"
    else
      record "streams f32 $backend" FAIL "see above"
    fi
  done
  backend="${BACKENDS##* }"
  log "== streams: bf16, attention $backend (reported only: the batch shape changes bf16 GEMM rounding)"
  "$TL" debug streams --model "$ckpt" --device "$DEVICE" --dtype bf16 --attention-backend "$backend" \
    --streams "$STREAMS" --max-tokens 32 --allow-mismatch "$STREAMS" || true
}

stage_serve() {
  local ckpt pid port=8000
  ckpt="$(checkpoint "$STREAM_SHAPE")" || { record serve FAIL "no checkpoint"; return; }
  for backend in $BACKENDS; do
    log "== serve: attention $backend"
    # f32: 64 concurrent streams must equal their solo runs only where the batch shape cannot
    # change the rounding (bf16 cuBLAS GEMMs of different M need not agree; see streams).
    "$TL" serve --model "$ckpt" --served-model-name qwen3-check --port "$port" --device "$DEVICE" \
      --dtype f32 --attention-backend "$backend" --enforce-eager >"$WORK/serve-$backend.log" 2>&1 &
    pid=$!
    if ! "$PY" "$HERE/serve_client.py" wait --base "http://127.0.0.1:$port" --timeout 180 --pid "$pid"; then
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      tail -5 "$WORK/serve-$backend.log"
      record "serve streams $backend" FAIL "tealight serve did not answer /health"
      continue
    fi
    if ! "$PY" "$HERE/first_contact.py" device --base "http://127.0.0.1:$port" --want "$DEVICE" \
      --out "$WORK/device-$backend.json"; then
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      record "serve streams $backend" FAIL "the server does not run on $DEVICE"
      continue
    fi
    if "$PY" "$HERE/serve_client.py" streams --base "http://127.0.0.1:$port" --model qwen3-check \
      --tokenizer "$ckpt" --streams "$STREAMS"; then
      record "serve streams $backend" PASS "$STREAMS over HTTP"
    else
      record "serve streams $backend" FAIL "see above"
    fi
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
}

for stage in "${STAGES[@]}"; do
  "stage_$stage"
done

echo
echo "== summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
