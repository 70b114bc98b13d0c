#!/usr/bin/env python3
"""HF transformers f32 on the same shapes `benches/forward.rs` measures, for side-by-side ratios.

    python scripts/bench/bench_forward_reference.py --model target/bench-models/0.6b --threads 2

Prints JSON: tokens/s for one decode step at batch 1 and 16 (context 128) and a 512-token prefill.
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM
from transformers.cache_utils import DynamicCache

CONTEXT = 128


def timed(fn, repeats):
    fn()  # warm-up
    best = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    best.sort()
    return best[len(best) // 2]


@torch.no_grad()
def decode_rate(model, batch, steps):
    """Median seconds of one decode step with `CONTEXT` tokens cached per sequence."""
    ids = torch.randint(1000, 100000, (batch, CONTEXT))
    out = model(ids, use_cache=True)
    cache = out.past_key_values
    nxt = torch.randint(1000, 100000, (batch, 1))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        out = model(nxt, past_key_values=cache, use_cache=True)
        times.append(time.perf_counter() - t)
        cache = out.past_key_values
    times = sorted(times[1:])
    return batch / times[len(times) // 2]


@torch.no_grad()
def prefill_rate(model, n, repeats):
    ids = torch.randint(1000, 100000, (1, n))
    secs = timed(lambda: model(ids, use_cache=True), repeats)
    return n / secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()
    result = {
        "engine": f"transformers {__import__('transformers').__version__} torch {torch.__version__} {args.dtype}",
        "threads": args.threads,
        "decode_b1_ctx128": decode_rate(model, 1, 12),
        "decode_b16_ctx128": decode_rate(model, 16, 6),
        "prefill_512": prefill_rate(model, 512, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
