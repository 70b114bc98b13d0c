#!/usr/bin/env bash
# Single-stream decode, tealight against llama-bench on the same GGUF files, in alternating
# rounds so both see the same machine: each round runs llama-bench (tg DECODE, one repetition
# after its own warm-up) and then `tealight bench` against a tealight server on the same file
# (two requests, 32 prompt tokens, DECODE output tokens, greedy: 1000 / mean TPOT). Prints every
# round's pair and ratio and the median ratio per file. The files are the ones
# scripts/compare/gguf.sh writes (run it first with the same PEERS_DIR and SHAPE).
#
#   PEERS_DIR=/path SHAPE=30b-a3b-4l CONVERTER=llama.cpp scripts/compare/decode_ab.sh
#
# Knobs: ROUNDS (6), DECODE (128), THREADS (2), TYPES ("q8_0 q4_k_m"), TEALIGHT_BIN (default: a
# release build made here).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
peers="${PEERS_DIR:-$repo/.cache/peers}"
shape="${SHAPE:-0.6b}"
converter="${CONVERTER:-tealight}"
rounds="${ROUNDS:-6}"
decode="${DECODE:-128}"
threads="${THREADS:-2}"
read -r -a types <<<"${TYPES:-q8_0 q4_k_m}"
checkpoint="$peers/models/qwen3-$shape"
bin="${TEALIGHT_BIN:-$repo/target/release/tealight}"
if [ -z "${TEALIGHT_BIN:-}" ]; then
  cargo build --release --bin tealight >&2
fi
llama_bin="$(dirname "$(scripts/compare/build_llama_server.sh "$peers")")"
out="$(mktemp -d)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$out"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $threads threads; shape $shape; decode $decode tokens"
for t in "${types[@]}"; do
  file="$peers/models/qwen3-$shape-$t-$converter.gguf"
  "$bin" serve --model "$file" --host 127.0.0.1 --port "$port" --threads "$threads" \
    --max-model-len 4096 --disable-log-requests >"$out/serve-$t.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break
    kill -0 "$server_pid" 2>/dev/null || { echo "tealight did not start on $file" >&2; exit 1; }
    sleep 0.5
  done
  ratios=()
  for r in $(seq 1 "$rounds"); do
    theirs=$("$llama_bin/llama-bench" -m "$file" -t "$threads" -p 0 -n "$decode" -r 1 -o json 2>/dev/null |
      python3 -c 'import json, sys; print(round(json.load(sys.stdin)[0]["avg_ts"], 2))')
    "$bin" bench --base-url "http://127.0.0.1:$port/v1" --tokenizer "$checkpoint" --no-progress \
      --input-len 32 --output-len "$decode" --num-prompts 2 --max-concurrency 1 --seed "$((100 + r))" \
      --result-file "$out/bench.json" >/dev/null 2>&1
    ours=$(python3 -c 'import json, sys; print(round(1000 / json.load(open(sys.argv[1]))["mean_tpot_ms"], 2))' "$out/bench.json")
    ratio=$(python3 -c "print(round($ours / $theirs, 3))")
    ratios+=("$ratio")
    echo "$t round $r: llama-bench $theirs tok/s, tealight $ours tok/s, ratio $ratio"
  done
  echo "$t median ratio of $rounds rounds: $(printf '%s\n' "${ratios[@]}" | python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.stdin))')"
  stop_server
done
