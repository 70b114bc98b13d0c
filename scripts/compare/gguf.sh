#!/usr/bin/env bash
# tealight and llama.cpp on the same GGUF files, side by side, on this machine's CPU:
# one random checkpoint of SHAPE (scripts/fixtures/synthetic_qwen3.py: 0.6b, the default, or
# 30b-a3b-4l, Qwen3-30B-A3B's layers four times), written as GGUF BF16 by `tealight debug gguf`
# (or with CONVERTER=llama.cpp by llama.cpp's convert_hf_to_gguf.py) and quantized to Q8_0 and
# Q4_K_M by llama.cpp's own `llama-quantize`. For each file:
#   - llama-bench (-p PREFILL -n DECODE, THREADS threads): llama.cpp's own measure;
#   - tealight serve and llama-server under `tealight bench` (completions endpoint, prompt ids,
#     ignore_eos): decode tok/s at concurrency 1 (1000 / mean TPOT), prefill tok/s of one
#     PREFILL-token prompt (PREFILL / mean TTFT), output tok/s at concurrency 16.
# Also tealight on the bf16 safetensors checkpoint (the baseline the quantized files replace), and
# on the same checkpoint quantized to FP8 at load (`--quantization fp8`).
# Writes RESULTS/table.md, RESULTS/machine.txt and every raw result.
#
#   PYTHON=/path/to/python-with-numpy scripts/compare/gguf.sh [RESULTS_DIR]
#
# Knobs: SHAPE (0.6b), CONVERTER (tealight | llama.cpp: which tool writes the BF16 GGUF;
# llama.cpp's needs torch and transformers in $PYTHON), THREADS (2), PREFILL (512), DECODE (64),
# TYPES ("q8_0 q4_k_m"), REPEATS (3: prompts
# per single-stream measure), PEERS_DIR (.cache/peers: llama.cpp sources, build, GGUF files; kept
# out of git), TEALIGHT_BIN (default: a release build made here), SKIP (any of "llamacpp
# llama-bench tealight bf16 fp8").
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"

threads="${THREADS:-2}"
prefill="${PREFILL:-512}"
decode="${DECODE:-64}"
repeats="${REPEATS:-3}"
read -r -a types <<<"${TYPES:-q8_0 q4_k_m}"
skip=" ${SKIP:-} "
python="${PYTHON:-python3}"
peers="${PEERS_DIR:-$repo/.cache/peers}"
out="${1:-$repo/target/compare-gguf/$(date +%Y%m%d-%H%M%S)}"
models="$peers/models"
shape="${SHAPE:-0.6b}"
converter="${CONVERTER:-tealight}"
checkpoint="$models/qwen3-$shape"
mkdir -p "$out" "$models"
out="$(cd "$out" && pwd)"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
skipped() { [[ "$skip" == *" $1 "* ]]; }
started=$SECONDS

{
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "cores: $(nproc) available"
  echo "flags: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "shape: $shape; BF16 GGUF written by $converter"
  echo "threads per engine: $threads; prefill $prefill tokens; decode $decode tokens"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

# --- binaries and files --------------------------------------------------------------------
bin="${TEALIGHT_BIN:-$repo/target/release/tealight}"
if [ -z "${TEALIGHT_BIN:-}" ]; then
  log "building tealight (release)"
  cargo build --release --bin tealight >&2
fi
server=$(scripts/compare/build_llama_server.sh "$peers")
llama_bin="$(dirname "$server")"
if [ ! -f "$checkpoint/config.json" ]; then
  log "writing the $shape-shaped checkpoint"
  "$python" scripts/fixtures/synthetic_qwen3.py --shape "$shape" --out "$checkpoint" >&2
fi
bf16_gguf="$models/qwen3-$shape-bf16-$converter.gguf"
if [ ! -f "$bf16_gguf" ]; then
  log "$converter writes $bf16_gguf"
  if [ "$converter" = llama.cpp ]; then
    PYTHON="$python" scripts/compare/convert_gguf.sh "$peers" "$checkpoint" bf16 "$bf16_gguf"
  else
    "$bin" debug gguf --model "$checkpoint" --out "$bf16_gguf" --type bf16
  fi
fi
for t in "${types[@]}"; do
  f="$models/qwen3-$shape-$t-$converter.gguf"
  if [ ! -f "$f" ]; then
    log "llama-quantize → $t"
    "$llama_bin/llama-quantize" "$bf16_gguf" "$f.partial" "${t^^}" "$threads" >"$out/quantize-$t.log" 2>&1
    mv "$f.partial" "$f"
  fi
done

# --- servers under tealight bench ------------------------------------------------------------
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 1200); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then log "the server exited"; return 1; fi
    sleep 0.5
  done
  return 1
}

# NAME PORT: the three measures; each draws its own prompts (servers cache prompts).
bench_server() {
  local name="$1" port="$2" url="http://127.0.0.1:$2/v1"
  local common=(--base-url "$url" --tokenizer "$checkpoint" --no-progress)
  "$bin" bench "${common[@]}" --input-len 32 --output-len "$decode" --num-prompts "$repeats" \
    --max-concurrency 1 --seed 11 --result-file "$out/$name-decode.json" >>"$out/$name.log" 2>&1 ||
    log "$name: decode bench failed"
  "$bin" bench "${common[@]}" --input-len "$prefill" --output-len 1 --num-prompts "$repeats" \
    --max-concurrency 1 --seed 12 --result-file "$out/$name-prefill.json" >>"$out/$name.log" 2>&1 ||
    log "$name: prefill bench failed"
  "$bin" bench "${common[@]}" --input-len 256 --output-len "$decode" --num-prompts 16 \
    --max-concurrency 16 --seed 13 --result-file "$out/$name-c16.json" >>"$out/$name.log" 2>&1 ||
    log "$name: concurrency-16 bench failed"
}

serve_tealight() { # NAME MODEL [EXTRA SERVE FLAGS]
  local port
  port=$(free_port)
  log "tealight serve $2 ${*:3}"
  "$bin" serve --model "$2" --host 127.0.0.1 --port "$port" --threads "$threads" \
    --max-model-len 4096 --disable-log-requests "${@:3}" >"$out/$1-serve.log" 2>&1 &
  server_pid=$!
  if wait_ready "http://127.0.0.1:$port/health"; then bench_server "$1" "$port"; else log "$1 did not start"; fi
  stop_server
}

serve_llamacpp() { # NAME MODEL
  local port
  port=$(free_port)
  log "llama-server $2"
  # -c is shared by the -np slots: each slot must hold the longest prompt plus its output.
  "$server" -m "$2" -t "$threads" -tb "$threads" --host 127.0.0.1 --port "$port" \
    -c $((16 * (prefill + decode + 64))) -np 16 >"$out/$1-serve.log" 2>&1 &
  server_pid=$!
  if wait_ready "http://127.0.0.1:$port/health"; then bench_server "$1" "$port"; else log "$1 did not start"; fi
  stop_server
}

for t in "${types[@]}"; do
  f="$models/qwen3-$shape-$t-$converter.gguf"
  if ! skipped llama-bench; then
    log "llama-bench $t"
    "$llama_bin/llama-bench" -m "$f" -t "$threads" -p "$prefill" -n "$decode" -r 3 -o json \
      >"$out/llama-bench-$t.json" 2>"$out/llama-bench-$t.log" || log "llama-bench $t failed"
  fi
  skipped tealight || serve_tealight "tealight-$t" "$f"
  skipped llamacpp || serve_llamacpp "llamacpp-$t" "$f"
done
skipped bf16 || serve_tealight "tealight-bf16" "$checkpoint"
skipped fp8 || serve_tealight "tealight-fp8" "$checkpoint" --quantization fp8

"$python" scripts/compare/gguf_table.py --dir "$out" --types "$(IFS=,; echo "${types[*]}")" \
  --prefill "$prefill" >"$out/table.md"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); took $((SECONDS - started)) s" >>"$out/machine.txt"
cat "$out/table.md"
log "results in $out ($((SECONDS - started)) s)"
