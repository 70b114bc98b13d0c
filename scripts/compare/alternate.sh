#!/usr/bin/env bash
# Two OpenAI-compatible servers measured in alternation: both start once, then each round runs
# the same `tealight bench` measure against A, then B. On a shared machine whose speed drifts by
# 10–20 % within minutes, a ratio taken pair by pair (same round, seconds apart) holds where two
# back-to-back runs of a whole script do not. Prints every value, the medians, and the median of
# the per-round ratios B ÷ A.
#
#   scripts/compare/alternate.sh MEASURE ROUNDS "SERVER A COMMAND" "SERVER B COMMAND"
#
# MEASURE: decode (mean TPOT in ms of 2 prompts of 32 → 64 tokens), prefill (mean TTFT in ms of
# 2 prompts of 512 tokens) or c16 (output tok/s, 16 prompts of 256 → 64 at concurrency 16).
# Each server command gets its port in $PORT, e.g.
#   "target/release/tealight serve --model m.gguf --threads 2 --port \$PORT"
#   "llama-server -m m.gguf -t 2 -tb 2 -np 16 -c 9216 --port \$PORT"
# Knobs: TEALIGHT_BIN (the bench client; default target/release/tealight), TOKENIZER (a
# checkpoint dir or tokenizer.json for the prompts; default the bench's own).
set -euo pipefail
cd "$(dirname "$0")/../.."

measure="${1:?usage: alternate.sh decode|prefill|c16 ROUNDS CMD_A CMD_B}"
rounds="${2:?rounds}"
cmd_a="${3:?server A command}"
cmd_b="${4:?server B command}"
bin="${TEALIGHT_BIN:-target/release/tealight}"
tokenizer=()
if [ -n "${TOKENIZER:-}" ]; then tokenizer=(--tokenizer "$TOKENIZER"); fi
case "$measure" in
  decode) shape=(--input-len 32 --output-len 64 --num-prompts 2 --max-concurrency 1); key=mean_tpot_ms ;;
  prefill) shape=(--input-len 512 --output-len 1 --num-prompts 2 --max-concurrency 1); key=mean_ttft_ms ;;
  c16) shape=(--input-len 256 --output-len 64 --num-prompts 16 --max-concurrency 16); key=output_throughput ;;
  *) echo "unknown measure $measure (decode, prefill, c16)" >&2; exit 2 ;;
esac

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ports=()
for cmd in "$cmd_a" "$cmd_b"; do
  port=$(free_port)
  (PORT=$port; eval "$cmd") >"$work/server-$port.log" 2>&1 &
  pids+=($!)
  ports+=("$port")
done
for i in 0 1; do
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null "http://127.0.0.1:${ports[$i]}/health"; then continue 2; fi
    sleep 0.5
  done
  echo "server $i did not come up; its log:" >&2
  tail -n 20 "$work/server-${ports[$i]}.log" >&2
  exit 1
done

for round in $(seq 1 "$rounds"); do
  for i in 0 1; do
    "$bin" bench --base-url "http://127.0.0.1:${ports[$i]}/v1" "${tokenizer[@]}" --no-progress \
      "${shape[@]}" --seed $((100 + round)) --result-file "$work/$round-$i.json" >/dev/null 2>&1 ||
      echo "round $round, server $i: bench failed" >&2
  done
done

python3 - "$work" "$rounds" "$key" <<'PY'
import json, os, statistics, sys
work, rounds, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
values = {0: [], 1: []}
for r in range(1, rounds + 1):
    for i in (0, 1):
        try:
            with open(os.path.join(work, f"{r}-{i}.json")) as f:
                values[i].append(json.load(f).get(key))
        except (OSError, ValueError):
            values[i].append(None)
pairs = [b / a for a, b in zip(values[0], values[1]) if a and b]
for i, name in ((0, "A"), (1, "B")):
    got = [v for v in values[i] if v]
    print(f"{name} {key}: " + " ".join(f"{v:.2f}" for v in values[i] if v)
          + (f"  (median {statistics.median(got):.2f})" if got else ""))
if pairs:
    print(f"B ÷ A, median of {len(pairs)} rounds: {statistics.median(pairs):.3f}")
PY
