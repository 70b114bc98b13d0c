#!/usr/bin/env python3
"""The table of scripts/compare/gguf.sh: per GGUF type, tealight and llama.cpp served under
`tealight bench` (decode at concurrency 1, prefill of one prompt, output tok/s at
concurrency 16), llama-bench's own numbers, and the ratios tealight ÷ llama.cpp.

    python gguf_table.py --dir RESULTS --types q8_0,q4_k_m --prefill 512
"""

import argparse
import json
import os


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def served(d, name, prefill):
    dec, pre, c16 = (load(os.path.join(d, f"{name}-{k}.json")) for k in ("decode", "prefill", "c16"))
    return {
        "decode": 1000.0 / dec["mean_tpot_ms"] if dec and dec.get("mean_tpot_ms") else None,
        "prefill": prefill * 1000.0 / pre["mean_ttft_ms"] if pre and pre.get("mean_ttft_ms") else None,
        "c16": c16["output_throughput"] if c16 and c16.get("completed") else None,
    }


def llama_bench(d, t):
    rows = load(os.path.join(d, f"llama-bench-{t}.json")) or []
    out = {}
    for r in rows:
        key = "prefill" if r.get("n_prompt", 0) > 0 else "decode"
        out[key] = (r["avg_ts"], r.get("stddev_ts", 0.0))
    return out


def fmt(v):
    return "—" if v is None else f"{v:.1f}"


def ratio(a, b):
    return "—" if not a or not b else f"{a / b:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--types", required=True)
    ap.add_argument("--prefill", type=int, default=512)
    a = ap.parse_args()
    print("| file | metric | tealight | llama.cpp (served) | tealight ÷ llama.cpp | llama-bench |")
    print("|---|---|---|---|---|---|")
    for t in a.types.split(","):
        te, ll, lb = served(a.dir, f"tealight-{t}", a.prefill), served(a.dir, f"llamacpp-{t}", a.prefill), llama_bench(a.dir, t)
        for key, label in (("decode", "decode tok/s, c=1"), ("prefill", f"prefill tok/s, {a.prefill} tokens"), ("c16", "output tok/s, c=16")):
            bench = lb.get(key)
            bench = f"{bench[0]:.1f} ± {bench[1]:.1f}" if bench else "—"
            print(f"| {t.upper()} | {label} | {fmt(te[key])} | {fmt(ll[key])} | {ratio(te[key], ll[key])} | {bench if key != 'c16' else ''} |")
    bf = served(a.dir, "tealight-bf16", a.prefill)
    if any(bf.values()):
        print(f"| bf16 safetensors | decode / prefill / c=16 | {fmt(bf['decode'])} / {fmt(bf['prefill'])} / {fmt(bf['c16'])} | | | |")
    fp8 = served(a.dir, "tealight-fp8", a.prefill)
    if any(fp8.values()):
        print(f"| same, `--quantization fp8` | decode / prefill / c=16 | {fmt(fp8['decode'])} / {fmt(fp8['prefill'])} / {fmt(fp8['c16'])} | | | |")
        print(f"| fp8 ÷ bf16 | decode / prefill / c=16 | {ratio(fp8['decode'], bf['decode'])} / "
              f"{ratio(fp8['prefill'], bf['prefill'])} / {ratio(fp8['c16'], bf['c16'])} | | | |")


if __name__ == "__main__":
    main()
