#!/usr/bin/env python3
"""HF transformers `generate` on the prompts `tealight bench --save-prompts` wrote: the same
token ids, output length forced (`min_new_tokens`), greedy, f32, a fixed thread count.

Measures what the comparison table needs, in the same units as `tealight bench`:
- single-stream decode tok/s: (n - 1) / (time(n tokens) - time(1 token)), one prompt at a time;
- TTFT (ms): time of a 1-token generate, one prompt at a time (prefill + first token);
- throughput at concurrency c: prompts in static batches of c, generated tokens / wall time.
(transformers has no server: "concurrency c" is a batch of c; all prompts are equally long, so
no padding changes the work.)

    python hf_generate.py --model DIR --prompts prompts.json --output-len 64 \
        --concurrency 1,4,16 --num-prompts 4,8,16 --threads 2 --out hf.json
"""

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def generate(model, ids, n):
    """Returns (seconds, generated tokens) for one generate call on a batch of prompt ids."""
    batch = torch.tensor(ids)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(batch, attention_mask=torch.ones_like(batch), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, pad_token_id=151643)
    secs = time.perf_counter() - start
    return secs, (out.shape[1] - batch.shape[1]) * batch.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSON written by tealight bench --save-prompts")
    ap.add_argument("--output-len", type=int, required=True)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--num-prompts", default="4,8,16", help="prompts per concurrency level")
    ap.add_argument("--single-stream-prompts", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    prompts = [p["ids"] for p in json.load(open(args.prompts))]
    n = args.output_len

    generate(model, [prompts[0]], 2)  # warm-up
    ttfts, decode_rates = [], []
    for ids in prompts[: args.single_stream_prompts]:
        t1, _ = generate(model, [ids], 1)
        tn, _ = generate(model, [ids], n)
        ttfts.append(t1)
        decode_rates.append((n - 1) / (tn - t1))

    levels = []
    counts = [int(x) for x in args.num_prompts.split(",")]
    for c, count in zip((int(x) for x in args.concurrency.split(",")), counts):
        chosen = (prompts * ((count // len(prompts)) + 1))[:count]
        tokens, start = 0, time.perf_counter()
        for i in range(0, count, c):
            _, got = generate(model, chosen[i : i + c], n)
            tokens += got
        secs = time.perf_counter() - start
        levels.append({"concurrency": c, "num_prompts": count, "output_tokens": tokens,
                       "seconds": secs, "output_throughput": tokens / secs})
        print(f"transformers c={c}: {tokens / secs:.2f} output tok/s", flush=True)

    result = {
        "engine": "transformers",
        "dtype": "float32",
        "threads": args.threads,
        "torch": torch.__version__,
        "input_len": len(prompts[0]),
        "output_len": n,
        "decode_tok_s": statistics.mean(decode_rates),
        "ttft_ms": 1000 * statistics.mean(ttfts),
        "levels": levels,
    }
    json.dump(result, open(args.out, "w"), indent=2)


if __name__ == "__main__":
    main()
