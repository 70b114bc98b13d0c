#!/usr/bin/env python3
"""transformers' logits at the rows `tealight debug logits` recorded, for the comparison.

    python scripts/gpu/reference_logits.py --model DIR --prompts P.json --rows T.json --out PREFIX

Each prompt is run once, teacher-forced over its whole length, in each dtype (bfloat16 and
float32 by default, TF32 off); the logits of the rows listed in T.json ([[prompt, position], ...])
are written to PREFIX.<dtype>.npy (float32, [rows, vocab]).
"""

import argparse
import json
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--rows", required=True, help="the .json written by tealight debug logits")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    prompts = json.load(open(args.prompts))
    rows = json.load(open(args.rows))["rows"]
    for dtype in args.dtypes:
        started = time.time()
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, dtype))
        model = model.to(args.device).eval()
        by_prompt = {}
        with torch.no_grad():
            for i, ids in enumerate(prompts):
                x = torch.tensor([ids], device=args.device)
                by_prompt[i] = model(input_ids=x).logits[0].float().cpu().numpy()
        out = np.stack([by_prompt[i][pos] for i, pos in rows]).astype(np.float32)
        np.save(f"{args.out}.{dtype}.npy", out)
        print(f"reference {dtype}: {out.shape[0]} rows in {time.time() - started:.1f} s", file=sys.stderr)
        del model, by_prompt
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
