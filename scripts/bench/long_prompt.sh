#!/usr/bin/env bash
# Time to the first token of one long prompt (random ordinary token ids to /v1/completions,
# max_tokens 1) on the Qwen3-0.6B shape, for one or more tealight binaries in alternating rounds
# (one server per measurement, so every prompt is new to its server):
#
#   scripts/bench/long_prompt.sh [binary ...]          # default: target/release/tealight
#
# Knobs: TOKENS ("2048 8192"), ROUNDS (2), THREADS (all cores), KV (auto), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-python3}"
model=target/bench-models/0.6b
if [ ! -f "$model/model.safetensors" ]; then
  "$python" scripts/fixtures/synthetic_qwen3.py --shape 0.6b --out "$model"
fi
if [ $# -eq 0 ]; then
  cargo build --release --quiet --bin tealight
  set -- target/release/tealight
fi
threads="${THREADS:-$(nproc)}"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for tokens in ${TOKENS:-2048 8192}; do
    for bin in "$@"; do
      port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      "$bin" serve --model "$model" --host 127.0.0.1 --port "$port" --threads "$threads" \
        --max-model-len 32768 --kv-cache-dtype "${KV:-auto}" --disable-log-requests >/dev/null 2>&1 &
      pid=$!
      seconds=$("$python" - "$port" "$tokens" "$pid" <<'PY'
import json, os, random, sys, time, urllib.request
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
base = f"http://127.0.0.1:{port}"
for _ in range(1200):
    try:
        urllib.request.urlopen(f"{base}/health", timeout=5)
        break
    except OSError:
        os.kill(pid, 0)
        time.sleep(0.5)
model = json.load(urllib.request.urlopen(f"{base}/v1/models"))["data"][0]["id"]
random.seed(n)
ids = [random.randint(1000, 100000) for _ in range(n)]
body = json.dumps({"model": model, "prompt": ids, "max_tokens": 1}).encode()
started = time.perf_counter()
request = urllib.request.Request(f"{base}/v1/completions", body, {"Content-Type": "application/json"})
usage = json.load(urllib.request.urlopen(request, timeout=7200))["usage"]
assert usage["prompt_tokens"] == n, usage
print(f"{time.perf_counter() - started:.2f}")
PY
)
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "round $round, $tokens tokens, $bin: $seconds s"
    done
  done
done
