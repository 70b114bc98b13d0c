#!/usr/bin/env bash
# Serving throughput and latency of tealight on a CUDA GPU, `vllm bench serve` style, on a
# random-weight Qwen3-4B-shaped checkpoint (bf16). Runs on the GPU machine.
#
#   scripts/gpu/bench.sh                       # backends "generic cuda", concurrency 1 16 64 256
#   BACKENDS=cuda CONCURRENCY="1 64" scripts/gpu/bench.sh
#
# For each attention backend: start `tealight serve --device cuda` on the checkpoint, wait for
# /health, check that the server reports the GPU as its device (tealight:device_info), run
# `tealight bench` (when it is built) or scripts/gpu/serve_client.py bench with 1024 input and
# 128 output tokens (random token prompts, every output token generated) at each concurrency, and print output tok/s, TTFT, TPOT, ITL,
# E2EL, and the c=1 decode rate as a fraction of the HBM roofline (weights + KV bytes read per
# token over 3.35 TB/s). Anchors for Qwen3-4B bf16 on an H100: vLLM ≈ 250–270 tok/s single
# stream; roofline ≈ 416 tok/s (weights only).
# Environment: TEALIGHT_BIN, TEALIGHT_GPU_WORK, BACKENDS, CONCURRENCY, SHAPE (default 4b),
# INPUT_LEN, OUTPUT_LEN, BANDWIDTH (bytes/s), PORT. Results: $OUT/bench-<backend>.json when $OUT is set.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/gpu/lib.sh
source "$HERE/lib.sh"

BACKENDS="${BACKENDS:-generic cuda}"
CONCURRENCY="${CONCURRENCY:-1 16 64 256}"
SHAPE="${SHAPE:-4b}"
INPUT_LEN="${INPUT_LEN:-1024}"
OUTPUT_LEN="${OUTPUT_LEN:-128}"
BANDWIDTH="${BANDWIDTH:-3.35e12}"
PORT="${PORT:-8000}"
NAME="qwen3-$SHAPE-synthetic"
LOGDIR="${OUT:-$WORK}"
mkdir -p "$LOGDIR"

gpu_setup
CKPT="$(checkpoint "$SHAPE")"
BASE="http://127.0.0.1:$PORT"

# `tealight bench` once it is built (it answers --help with vLLM's flags), else the Python client.
use_tealight_bench() {
  "$TL" bench --help 2>/dev/null | grep -q -- '--max-concurrency'
}

FAILED=0
for backend in $BACKENDS; do
  log "== bench: $SHAPE, attention $backend, concurrency $CONCURRENCY"
  "$TL" serve --model "$CKPT" --served-model-name "$NAME" --port "$PORT" --device cuda \
    --attention-backend "$backend" --max-num-seqs 256 --gpu-memory-utilization 0.9 \
    >"$LOGDIR/serve-$backend.log" 2>&1 &
  pid=$!
  if ! "$PY" "$HERE/serve_client.py" wait --base "$BASE" --timeout 300 --pid "$pid"; then
    tail -20 "$LOGDIR/serve-$backend.log"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    FAILED=1
    continue
  fi
  if ! "$PY" "$HERE/first_contact.py" device --base "$BASE" --want cuda --out "$LOGDIR/device-$backend.json"; then
    log "FAIL: the server does not run on the GPU (its own report above); no bench of it"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    FAILED=1
    continue
  fi
  if use_tealight_bench; then
    for c in $CONCURRENCY; do
      n=$((c * 2 > 8 ? c * 2 : 8))
      # The flags `tealight bench` takes (the same as first-contact.sh's stage d).
      "$TL" bench --base-url "$BASE/v1" --model "$NAME" --tokenizer "$CKPT" \
        --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --max-concurrency "$c" \
        --num-prompts "$n" --no-progress --result-file "$LOGDIR/bench-$backend-c$c.json" || FAILED=1
    done
  else
    # shellcheck disable=SC2086
    "$PY" "$HERE/serve_client.py" bench --base "$BASE" --model "$NAME" --tokenizer "$CKPT" \
      --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --concurrency $CONCURRENCY \
      --weights-dir "$CKPT" --bandwidth "$BANDWIDTH" --json "$LOGDIR/bench-$backend.json" || FAILED=1
  fi
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
done
exit "$FAILED"
