#!/usr/bin/env python3
"""Compares tealight's logits with transformers' (scripts/gpu/reference_logits.py).

    python scripts/gpu/compare_logits.py --ref PREFIX --got generic=A.npy cuda=B.npy

References: PREFIX.bfloat16.npy and PREFIX.float32.npy, the same rows as each A/B.npy.
Per backend:
- top-1 agreement with transformers bf16 and with transformers f32 over all rows;
- "decisive" rows: where transformers f32's top-1 leads its runner-up by more than TAU =
  4 × the RMS difference between transformers bf16 and f32 logits (bf16's own noise). On random
  weights many positions are near-ties that no bf16 implementation decides reliably; on the
  decisive ones any correct bf16 implementation must agree with f32;
- RMS and max |tealight − transformers f32|, against transformers bf16's own (the noise floor).
Passes when there are at least --min-rows rows, top-1 agreement on decisive rows is at least
--min-agreement, and the RMS error is at most --max-rms-ratio × transformers bf16's.
The plain top-1 agreement with transformers bf16 (a "≥ 99 %" target) is printed too, as information.
Exit code 1 if any backend fails.
"""

import argparse
import sys

import numpy as np


def top2(x):
    part = np.partition(x, -2, axis=1)[:, -2:]
    return np.argmax(x, axis=1), part[:, 1] - part[:, 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True)
    ap.add_argument("--got", nargs="+", required=True, help="LABEL=FILE.npy")
    ap.add_argument("--min-rows", type=int, default=256)
    ap.add_argument("--min-agreement", type=float, default=0.99)
    ap.add_argument("--max-rms-ratio", type=float, default=3.0)
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    r16 = np.load(f"{args.ref}.bfloat16.npy")
    r32 = np.load(f"{args.ref}.float32.npy")
    a16, _ = top2(r16)
    a32, gap32 = top2(r32)
    noise = float(np.sqrt(np.mean((r16 - r32) ** 2)))
    tau = 4.0 * noise
    decisive = gap32 > tau
    base_max = float(np.max(np.abs(r16 - r32)))
    print(f"{args.label} rows {len(r32)}; transformers bf16 vs f32: top-1 {np.mean(a16 == a32):.2%}, "
          f"rms {noise:.4f}, max {base_max:.3f}; decisive rows (gap > {tau:.3f}): {int(decisive.sum())}")
    print(f"{'backend':<10} {'vs_hf_bf16':>10} {'vs_hf_f32':>10} {'decisive':>9} {'rms':>8} {'rms/hf':>7} "
          f"{'max':>8}  result")
    failed = False
    for spec in args.got:
        label, path = spec.split("=", 1)
        got = np.load(path)
        if got.shape != r32.shape:
            print(f"{label:<10} shape {got.shape} != reference {r32.shape}  FAIL")
            failed = True
            continue
        ag, _ = top2(got)
        nan = bool(np.isnan(got).any())
        rms = float(np.sqrt(np.mean((got - r32) ** 2)))
        mx = float(np.max(np.abs(got - r32)))
        dec = float(np.mean(ag[decisive] == a32[decisive])) if decisive.any() else float("nan")
        ok = (not nan and len(got) >= args.min_rows and decisive.sum() > 0
              and dec >= args.min_agreement and rms <= args.max_rms_ratio * noise + 1e-6)
        failed |= not ok
        print(f"{label:<10} {np.mean(ag == a16):>10.2%} {np.mean(ag == a32):>10.2%} {dec:>9.2%} {rms:>8.4f} "
              f"{rms / max(noise, 1e-12):>7.2f} {mx:>8.3f}  {'PASS' if ok else 'FAIL'}{' (NaN)' if nan else ''}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
