#!/usr/bin/env bash
# Run HERE before a device run: downloads the wheels in scripts/gpu/wheels.txt for the GPU
# machine's Python (CPython 3.12, x86-64 manylinux) into .whl/ (git-ignored; carried with
# `carry=[".whl", ...]`). Without dependencies: the list names every one the image lacks.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
  manylinux1_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_24_x86_64; do
  platforms+=(--platform "$p")
done
grep -v '^\s*#' scripts/gpu/wheels.txt | grep -v '^\s*$' >.whl/requirements.txt
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl -r .whl/requirements.txt
rm -f .whl/requirements.txt
printf 'fetch-wheels.sh: %s wheels, %s in .whl/\n' "$(find .whl -type f -name '*.whl' | wc -l)" "$(du -sh .whl | cut -f1)"
