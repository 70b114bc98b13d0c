#!/usr/bin/env bash
# Offline throughput side by side, in one run: the engine with all requests submitted at once
# (benches/throughput.rs) and HF transformers generating the same requests one at a time.
#
#   PYTHON=/path/to/venv/bin/python scripts/bench/bench_throughput.sh [threads] [requests]
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-2}"
export RAYON_NUM_THREADS="$threads" TEALIGHT_BENCH_REQUESTS="${2:-16}"
python="${PYTHON:-python3}"
model=target/bench-models/0.6b
[ -f "$model/model.safetensors" ] || "$python" scripts/fixtures/synthetic_qwen3.py --shape 0.6b --out "$model"
export TEALIGHT_BENCH_MODEL="$PWD/$model"
ours=$(cargo bench --bench throughput 2>/dev/null | grep '^{')
theirs=$("$python" scripts/bench/throughput_reference.py --model "$model" --threads "$threads")
echo "$ours"
echo "$theirs"
"$python" - "$ours" "$theirs" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ours, theirs = a["output_tokens_per_s"], b["output_tokens_per_s"]
print(f"ratio: {ours / theirs:.2f}x ({ours:.1f} vs {theirs:.1f} output tok/s, {a['requests']} requests)")
PY
