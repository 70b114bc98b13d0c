#!/usr/bin/env bash
# Runs tealight's CUDA kernels on the CPU — the .cu sources compiled as host C++ against emu.h,
# one OS thread per CUDA thread — on the small kernel cases, and compares each with the Rust
# twins (kernels/emu/run_case.cpp). Needs g++ (C++20) and a tealight binary (default: the debug
# build, built if missing). No GPU, no CUDA toolkit.
#
#   kernels/emu/run.sh [--only SUBSTRING]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
OUT="${TEALIGHT_EMU_DIR:-$REPO/target/emu}"
BIN="${TEALIGHT_BIN:-$REPO/target/debug/tealight}"
[[ -x "$BIN" ]] || cargo build --bin tealight
mkdir -p "$OUT"
rm -f "$OUT"/case-*.bin
g++ -std=c++20 -O1 -pthread -fno-strict-aliasing -I kernels kernels/emu/run_case.cpp -o "$OUT/run_case"
"$BIN" debug kernels --small --dump "$OUT" "$@" >"$OUT/cases.txt"
cut -f2 "$OUT/cases.txt" | paste -d' ' <(cut -f1 "$OUT/cases.txt" | xargs -n1 basename) - >&2
"$OUT/run_case" "$OUT"/case-*.bin
