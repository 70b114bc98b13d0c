#!/usr/bin/env bash
# Converts a Hugging Face checkpoint to GGUF with the converter vendored in the llama.cpp sources
# that build_llama_server.sh unpacked (its own gguf-py comes along on sys.path).
# Usage: convert_gguf.sh PEERS_DIR CHECKPOINT_DIR OUTTYPE(f32|f16|bf16|q8_0) OUT.gguf
# $PYTHON must have torch and transformers; the converter's two extra modules (sentencepiece,
# protobuf) go into PEERS_DIR, not into that environment.
set -euo pipefail

peers="${1:?usage: convert_gguf.sh PEERS_DIR CHECKPOINT OUTTYPE OUT}"
checkpoint="${2:?}"
outtype="${3:?}"
out="${4:?}"
python="${PYTHON:-python3}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
llama="$peers/llama-cpp-python-$version/vendor/llama.cpp"

if [ -f "$out" ]; then
  exit 0
fi
libs="$peers/convert-libs"
if [ ! -d "$libs/sentencepiece" ]; then
  "$python" -m pip install -q --no-deps --target "$libs" sentencepiece 'protobuf>=4.21,<5' >&2
fi
mkdir -p "$(dirname "$out")"
PYTHONPATH="$libs${PYTHONPATH:+:$PYTHONPATH}" "$python" "$llama/convert_hf_to_gguf.py" \
  "$checkpoint" --outtype "$outtype" --outfile "$out.partial" >&2
mv "$out.partial" "$out"
