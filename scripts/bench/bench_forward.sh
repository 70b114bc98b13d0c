#!/usr/bin/env bash
# Side by side, in one run: tealight's forward (criterion, benches/forward.rs) and HF transformers
# f32 on the same Qwen3-0.6B-shaped checkpoint and thread count. Prints tokens/s and ratios.
#
#   PYTHON=/path/to/venv/bin/python scripts/bench/bench_forward.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${1:-2}"
python="${PYTHON:-python3}"
export RAYON_NUM_THREADS="$threads"

model=target/bench-models/0.6b
if [ ! -f "$model/model.safetensors" ]; then
  "$python" scripts/fixtures/synthetic_qwen3.py --shape 0.6b --out "$model"
fi
export TEALIGHT_BENCH_MODEL="$PWD/$model"

ref=$("$python" scripts/bench/bench_forward_reference.py --model "$model" --threads "$threads")
echo "transformers: $ref"
for dtype in f32 f16; do
  TEALIGHT_BENCH_DTYPE=$dtype cargo bench --bench forward -- --noplot >/dev/null 2>&1
  "$python" - "$dtype" "$ref" <<'PY'
import json, sys, pathlib
dtype, ref = sys.argv[1], json.loads(sys.argv[2])
group = pathlib.Path("target/criterion") / f"qwen3-0.6b-{dtype}"
rows = [("decode_b1_ctx128", 1), ("decode_b16_ctx128", 16), ("prefill_512", 512)]
print(f"\ntealight {dtype} vs {ref['engine']} ({ref['threads']} threads)")
print(f"{'case':<20}{'tealight tok/s':>16}{'transformers tok/s':>20}{'ratio':>8}")
for name, tokens in rows:
    est = json.loads((group / name / "new" / "estimates.json").read_text())
    ours = tokens / (est["mean"]["point_estimate"] / 1e9)
    theirs = ref[name]
    print(f"{name:<20}{ours:>16.1f}{theirs:>20.1f}{ours / theirs:>8.2f}")
PY
done
