#!/usr/bin/env bash
# tealight side by side with HF transformers and llama.cpp on this machine's CPU, in one go, on
# one Qwen3-0.6B-shaped random checkpoint:
#   - tealight serve (f32, $THREADS threads) under `tealight bench`;
#   - llama.cpp's llama-server (built from the llama-cpp-python sdist on PyPI, the same weights
#     converted to GGUF f32 and f16) under the same `tealight bench`;
#   - transformers `generate` (f32, torch.set_num_threads($THREADS)) on the same prompt ids.
# Writes RESULTS/table.md (Markdown, with ratios), RESULTS/machine.txt and every raw result.
#
#   PYTHON=/path/to/venv/bin/python scripts/compare/cpu.sh [RESULTS_DIR]
#
# PYTHON must have torch and transformers. Knobs (environment): THREADS (2), INPUT_LEN (256),
# OUTPUT_LEN (64), LEVELS ("1 4 16") with PROMPTS ("4 8 16", prompts per level), SKIP (any of
# "tealight transformers llamacpp"), PEERS_DIR (.cache/peers: llama.cpp sources and build, kept
# out of git), TEALIGHT_BIN (default: a release build made here).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"

threads="${THREADS:-2}"
input_len="${INPUT_LEN:-256}"
output_len="${OUTPUT_LEN:-64}"
read -r -a levels <<<"${LEVELS:-1 4 16}"
read -r -a prompts <<<"${PROMPTS:-4 8 16}"
skip=" ${SKIP:-} "
python="${PYTHON:-python3}"
peers="${PEERS_DIR:-$repo/.cache/peers}"
out="${1:-$repo/target/compare-cpu/$(date +%Y%m%d-%H%M%S)}"
model="${MODEL_DIR:-$repo/target/compare-cpu/qwen3-0.6b}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
max_prompts=0
for n in "${prompts[@]}"; do ((n > max_prompts)) && max_prompts=$n; done
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
skipped() { [[ "$skip" == *" $1 "* ]]; }
started=$SECONDS

# --- the machine -------------------------------------------------------------------------
{
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "cores: $(nproc) available ($(lscpu | sed -n 's/^CPU(s): *//p') logical on the host)"
  echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
  echo "flags: $(grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "threads per engine: $threads; input $input_len / output $output_len tokens"
} >"$out/machine.txt"
cat "$out/machine.txt" >&2

# --- weights and prompts -----------------------------------------------------------------
if [ ! -f "$model/model.safetensors" ]; then
  log "writing the Qwen3-0.6B-shaped checkpoint to $model"
  "$python" scripts/fixtures/synthetic_qwen3.py --shape 0.6b --out "$model" >&2
fi
bin="${TEALIGHT_BIN:-$repo/target/release/tealight}"
if [ -z "${TEALIGHT_BIN:-}" ]; then
  log "building tealight (release)"
  cargo build --release --bin tealight >&2
fi
"$bin" bench --tokenizer "$model" --input-len "$input_len" --num-prompts "$max_prompts" \
  --save-prompts "$out/prompts.json" --prompts-only

# --- servers under tealight bench --------------------------------------------------------
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

wait_ready() { # URL of /health; gives up after 10 minutes
  for _ in $(seq 1 1200); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then log "the server exited"; return 1; fi
    sleep 0.5
  done
  return 1
}

# Each level draws its own prompts (seed = level index; level 0 is prompts.json, which
# transformers uses): servers cache prompts, and a repeated one would skip its prefill.
bench_levels() { # NAME PORT
  local name="$1" port="$2" i
  for i in "${!levels[@]}"; do
    log "$name: concurrency ${levels[$i]}, ${prompts[$i]} prompts"
    "$bin" bench --base-url "http://127.0.0.1:$port/v1" --tokenizer "$model" \
      --input-len "$input_len" --output-len "$output_len" --num-prompts "${prompts[$i]}" \
      --max-concurrency "${levels[$i]}" --seed "$i" --no-progress \
      --result-file "$out/$name-c${levels[$i]}.json" >>"$out/$name.log" 2>&1 ||
      log "$name: bench failed at concurrency ${levels[$i]} (see $out/$name.log)"
  done
}

if ! skipped tealight; then
  port=$(free_port)
  log "tealight serve on :$port"
  "$bin" serve --model "$model" --host 127.0.0.1 --port "$port" --threads "$threads" \
    --max-model-len 4096 --disable-log-requests >"$out/tealight-serve.log" 2>&1 &
  server_pid=$!
  if wait_ready "http://127.0.0.1:$port/health"; then
    bench_levels tealight "$port"
  else
    log "tealight serve did not start (see $out/tealight-serve.log)"
  fi
  stop_server
fi

if ! skipped llamacpp; then
  log "llama.cpp: building llama-server (first time: ~5 minutes)"
  server=$(scripts/compare/build_llama_server.sh "$peers")
  ctx=$(( ${levels[-1]} * (input_len + output_len + 64) ))
  for dtype in f32 f16; do
    gguf="$model/../qwen3-0.6b-$dtype.gguf"
    log "llama.cpp: converting to GGUF $dtype"
    PYTHON="$python" scripts/compare/convert_gguf.sh "$peers" "$model" "$dtype" "$gguf"
    port=$(free_port)
    "$server" -m "$gguf" -t "$threads" -tb "$threads" --host 127.0.0.1 --port "$port" \
      -c "$ctx" -np "${levels[-1]}" >"$out/llamacpp-$dtype-serve.log" 2>&1 &
    server_pid=$!
    if wait_ready "http://127.0.0.1:$port/health"; then
      bench_levels "llamacpp-$dtype" "$port"
    else
      log "llama-server ($dtype) did not start (see $out/llamacpp-$dtype-serve.log)"
    fi
    stop_server
  done
fi

if ! skipped transformers; then
  log "transformers generate"
  "$python" scripts/compare/hf_generate.py --model "$model" --prompts "$out/prompts.json" \
    --output-len "$output_len" --concurrency "$(IFS=,; echo "${levels[*]}")" \
    --num-prompts "$(IFS=,; echo "${prompts[*]}")" --threads "$threads" \
    --out "$out/transformers.json" >>"$out/transformers.log" 2>&1 ||
    log "transformers failed (see $out/transformers.log)"
fi

"$python" scripts/compare/table.py --dir "$out" --levels "$(IFS=,; echo "${levels[*]}")" >"$out/table.md"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); took $((SECONDS - started)) s" >>"$out/machine.txt"
cat "$out/table.md"
log "results in $out ($((SECONDS - started)) s)"
