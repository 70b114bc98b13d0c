#!/usr/bin/env python3
"""HF transformers `generate`, one request at a time, on the workload `benches/throughput.rs`
wrote — the baseline for the engine's offline throughput.

    python scripts/bench/throughput_reference.py --model target/bench-models/0.6b --threads 2
"""

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--workload", default="target/bench-throughput/workload.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    work = json.load(open(args.workload))
    generated = 0
    start = time.perf_counter()
    with torch.no_grad():
        for item in work:
            ids = torch.tensor([item["prompt_ids"]])
            n = item["output_len"]
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=151643)
            generated += out.shape[1] - ids.shape[1]
    secs = time.perf_counter() - start
    print(json.dumps({"engine": "transformers f32, one request at a time", "requests": len(work),
                      "output_tokens": generated, "seconds": secs, "output_tokens_per_s": generated / secs,
                      "threads": args.threads}))


if __name__ == "__main__":
    main()
