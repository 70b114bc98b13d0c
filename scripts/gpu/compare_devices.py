#!/usr/bin/env python3
"""Compares a quantized model's logits on two devices (tealight `debug logits` outputs).

    python scripts/gpu/compare_devices.py --dense DENSE.npy --cpu CPU.npy --got cuda=CUDA.npy

DENSE: the unquantized model on the CPU; CPU: the quantized model on the CPU (own kernels,
held bit for bit to scalar definitions by the tests); GOT: the same quantized model elsewhere
(candle's quantized matmul, or FP8 dequantized to bf16, on the GPU). The yardstick is what the
quantization itself moves: noise = RMS(CPU − DENSE). Another device's arithmetic (its own
activation rounding, bf16 compute) may differ from the CPU's by less than that, not more:
passes when RMS(GOT − CPU) <= --max-ratio × noise, nothing is NaN, and on decisive rows (the
CPU's top-1 leads its runner-up by more than 4 × noise) GOT's top-1 agrees on at least
--min-agreement of them. Exit code 1 if any fails.
"""

import argparse
import sys

import numpy as np

from compare_logits import top2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dense", required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("--got", nargs="+", required=True, help="LABEL=FILE.npy")
    ap.add_argument("--max-ratio", type=float, default=1.0)
    ap.add_argument("--min-agreement", type=float, default=0.98)
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    dense, cpu = np.load(args.dense), np.load(args.cpu)
    noise = float(np.sqrt(np.mean((cpu - dense) ** 2)))
    top, gap = top2(cpu)
    decisive = gap > 4.0 * noise
    print(f"{args.label} rows {len(cpu)}; quantization noise RMS(cpu - dense) {noise:.4f}; "
          f"decisive rows: {int(decisive.sum())}")
    failed = False
    for spec in args.got:
        label, path = spec.split("=", 1)
        got = np.load(path)
        if got.shape != cpu.shape:
            print(f"{label}: shape {got.shape} != {cpu.shape}  FAIL")
            failed = True
            continue
        nan = bool(np.isnan(got).any())
        rms = float(np.sqrt(np.mean((got - cpu) ** 2)))
        agree = float(np.mean(np.argmax(got[decisive], axis=1) == top[decisive])) if decisive.any() else 1.0
        ok = not nan and rms <= args.max_ratio * noise + 1e-6 and agree >= args.min_agreement
        failed |= not ok
        print(f"{label}: rms vs cpu {rms:.4f} ({rms / max(noise, 1e-12):.2f} x noise), top-1 on decisive "
              f"rows {agree:.2%}  {'PASS' if ok else 'FAIL'}{' (NaN)' if nan else ''}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
