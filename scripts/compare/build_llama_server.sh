#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the OpenAI-compatible peer), `llama-bench` and `llama-quantize`
# from the llama-cpp-python sdist on PyPI, which vendors llama.cpp: PyPI is the one source of C++
# code this machine can reach.
# Usage: build_llama_server.sh PEERS_DIR   → prints the path of the built llama-server (the other
# two sit beside it).
# The sources and the build stay under PEERS_DIR (outside git); a second run reuses them.
set -euo pipefail

peers="${1:?usage: build_llama_server.sh PEERS_DIR}"
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
mkdir -p "$peers"
peers="$(cd "$peers" && pwd)"
src="$peers/llama-cpp-python-$version"
build="$src/vendor/llama.cpp/build"
server="$build/bin/llama-server"

if [ -x "$server" ] && [ -x "$build/bin/llama-bench" ] && [ -x "$build/bin/llama-quantize" ]; then
  echo "$server"
  exit 0
fi

# Build tools in their own venv, so the system Python stays as it is.
tools="$peers/venv-build"
if [ ! -x "$tools/bin/cmake" ]; then
  python3 -m venv "$tools" >&2
  "$tools/bin/pip" install -q cmake ninja >&2
fi

if [ ! -d "$src" ]; then
  # --no-binary for this one package only: `:all:` would also build cmake from source.
  "$tools/bin/pip" download -q --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$peers/dl" >&2
  tar -xzf "$peers/dl/llama_cpp_python-$version.tar.gz" -C "$peers" >&2
  if [ ! -d "$src" ]; then
    mv "$peers/llama_cpp_python-$version" "$src"
  fi
fi

export PATH="$tools/bin:$PATH"
cd "$src/vendor/llama.cpp"
cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build build -j"${BUILD_JOBS:-2}" --target llama-server llama-bench llama-quantize >&2
echo "$server"
