#!/usr/bin/env bash
# Speculative decoding served, side by side in one run: output tok/s of `tealight bench` with
# --speculative-config off, ngram, suffix, ngram with every draft rejected, and a random-weight
# EAGLE-3 head (its drafts all but never right: what the head costs) on the Qwen3-0.6B shape
# (random weights, CPU serving defaults), for three workloads:
#   c1-greedy   one stream, temperature 0 (a random-weight model's greedy output repeats
#               itself: drafts are found and accepted)
#   c1-sampled  one stream, temperature 1
#   c16-greedy  16 streams at once
# Prints tok/s, the ratio to speculation off, and the acceptance `tealight bench` read from
# /metrics.
#
#   scripts/bench/bench_speculative.sh [prompts per workload (4)] [output tokens (96)]
#   METHODS="off eagle3" scripts/bench/bench_speculative.sh   (a subset; "off" is the baseline)
set -euo pipefail
cd "$(dirname "$0")/../.."
prompts="${1:-4}"
output="${2:-96}"
python="${PYTHON:-python3}"
model=target/bench-models/0.6b
if [ ! -f "$model/model.safetensors" ]; then
  "$python" scripts/fixtures/synthetic_qwen3.py --shape 0.6b --out "$model"
fi
head=target/bench-models/0.6b-eagle3
if [ ! -f "$head/model.safetensors" ]; then
  "$python" scripts/fixtures/random_eagle3_head.py --shape 0.6b --out "$head"
fi
methods="${METHODS:-off ngram suffix rejected eagle3}"
cargo build --release --quiet
bin=target/release/tealight
out=$(mktemp -d)
port=18431

declare -A configs=(
  [off]=""
  [ngram]='{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_min":2,"prompt_lookup_max":4}'
  [suffix]='{"method":"suffix","num_speculative_tokens":6}'
  # The worst case: ngram's drafts, every one rejected (a measuring aid).
  [rejected]='{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_min":2,"prompt_lookup_max":4,"tealight_reject_all_drafts":true}'
  [eagle3]="{\"method\":\"eagle3\",\"model\":\"$head\",\"num_speculative_tokens\":3}"
)
for method in $methods; do
  args=(serve --model "$model" --port "$port")
  if [ -n "${configs[$method]}" ]; then
    args+=(--speculative-config "${configs[$method]}")
  fi
  "$bin" "${args[@]}" >"$out/server-$method.log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 1
  done
  run() { # workload concurrency prompts temperature
    "$bin" bench --port "$port" --tokenizer "$model" --input-len 128 --output-len "$output" \
      --num-prompts "$3" --max-concurrency "$2" --temperature "$4" --seed 7 --no-progress \
      --result-file "$out/$method-$1.json" >"$out/$method-$1.txt"
  }
  run c1-greedy 1 "$prompts" 0
  run c1-sampled 1 "$prompts" 1
  run c16-greedy 16 16 0
  kill "$server"
  wait "$server" 2>/dev/null || true
done

"$python" - "$out" $methods <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
methods = sys.argv[2:]
print(f"{'workload':<12}{'method':<8}{'out tok/s':>10}{'vs off':>8}{'accept %':>10}{'accept len':>12}")
for workload in ["c1-greedy", "c1-sampled", "c16-greedy"]:
    base = json.loads((out / f"off-{workload}.json").read_text())["output_throughput"]
    for method in methods:
        r = json.loads((out / f"{method}-{workload}.json").read_text())
        rate = r.get("spec_decode_acceptance_rate")
        length = r.get("spec_decode_acceptance_length")
        print(f"{workload:<12}{method:<8}{r['output_throughput']:>10.2f}"
              f"{r['output_throughput'] / base:>8.3f}"
              f"{'-' if rate is None else f'{rate:.1f}':>10}"
              f"{'-' if length is None else f'{length:.2f}':>12}")
PY
echo "(reports and server logs: $out)"
