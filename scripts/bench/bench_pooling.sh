#!/usr/bin/env bash
# Pooling side by side, in one run, on one Qwen3-0.6B-shaped checkpoint. Embedding throughput
# with it laid out as Qwen3-Embedding: tealight's /v1/embeddings, sentence-transformers (torch
# f32) and `llama-server --embedding --pooling last` on a bf16 GGUF of the same shape (tokens/s,
# each engine's own token count). Reranking latency with it read as Qwen3-Reranker: tealight's
# /v1/rerank against transformers f32 running the model card's scoring (one query, 100
# documents). Threads: all of this machine's cores.
#
#   PYTHON=/path/to/venv/with/torch+sentence-transformers PEERS=~/.cache/tealight/peers \
#     scripts/bench/bench_pooling.sh [documents] [words per document]
set -euo pipefail
cd "$(dirname "$0")/../.."
docs="${1:-64}"
words="${2:-200}"
python="${PYTHON:-python3}"
peers="${PEERS:-$HOME/.cache/tealight/peers}"

source_model=target/bench-models/0.6b
if [ ! -f "$source_model/model.safetensors" ]; then
  "$python" scripts/fixtures/synthetic_qwen3.py --shape 0.6b --out "$source_model"
fi
model=target/bench-models/0.6b-embedding
if [ ! -f "$model/modules.json" ]; then
  "$python" scripts/fixtures/embedding_reference.py --lay-out "$source_model" "$model"
fi
cargo build --release --quiet
"$python" scripts/bench/embeddings_reference.py --model "$model" --docs "$docs" --words "$words" \
  --tealight target/release/tealight --peers "$peers"
"$python" scripts/bench/rerank_reference.py --model "$source_model" --tealight target/release/tealight
