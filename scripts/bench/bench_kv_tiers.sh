#!/usr/bin/env bash
# Two alternating 12k-token sessions on the Qwen3-0.6B shape with a KV pool that holds one:
# time to first token of the returning session with the disk tier (--kv-offload-dir) and
# without, in one run (scripts/bench/kv_tiers.py). Threads: all of this machine's cores.
#
#   scripts/bench/bench_kv_tiers.sh [tokens] [kv-cache-dtype: auto|float16|bfloat16]
set -euo pipefail
cd "$(dirname "$0")/../.."
tokens="${1:-12000}"
dtype="${2:-auto}"
python="${PYTHON:-python3}"
model=target/bench-models/0.6b
if [ ! -f "$model/model.safetensors" ]; then
  "$python" scripts/fixtures/synthetic_qwen3.py --shape 0.6b --out "$model"
fi
# The 0.6B shape: 28 layers × K and V × 8 KV heads × 128 dims × bytes per element.
case "$dtype" in
  auto) elem=4 ;;
  float16|fp16|bfloat16|bf16) elem=2 ;;
  *) echo "unknown dtype $dtype" >&2; exit 2 ;;
esac
cargo build --release --quiet
"$python" scripts/bench/kv_tiers.py --model "$model" --tealight target/release/tealight \
  --tokens "$tokens" --kv-cache-dtype "$dtype" --bytes-per-token $((28 * 2 * 8 * 128 * elem))
