#!/usr/bin/env python3
"""A Qwen3 checkpoint with real shapes and random weights, made with transformers on the GPU.

    python scripts/gpu/make_checkpoint.py --shape 4b --out /tmp/qwen3-4b [--shape 0.6b --out DIR ...]

Weights follow scripts/fixtures/synthetic_qwen3.py's distributions (not its bits): embeddings uniform in
[-0.25, 0.25), projections uniform with variance 1/fan_in, norm scales uniform in [0.75, 1.25).
transformers' own init (normal, std 0.02) gives nearly flat next-token distributions, where the
top-1 token of any bf16 implementation is mostly noise. Stored in bf16 with the real Qwen3
tokenizer files from models/qwen3-tiny. `--method numpy` runs scripts/fixtures/synthetic_qwen3.py instead
(same bits as the Rust generator; slower, CPU only).
"""

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = ROOT / "models" / "qwen3-tiny"

SHAPES = {
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32),
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128),
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128),
}
SEEDS = {"tiny": 1, "0.6b": 3, "4b": 4}
COMPLETE = ".complete"

GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
}


def copy_tokenizer(out: Path):
    for name in ["tokenizer.json", "tokenizer_config.json", "TOKENIZER-LICENSE.md"]:
        src = TOKENIZER_DIR / name
        if src.exists():
            shutil.copy(src, out / name)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))


def with_transformers(shape: str, out: Path, device: str):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    s = SHAPES[shape]
    cfg = Qwen3Config(
        vocab_size=151936,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        **s,
    )
    torch.manual_seed(SEEDS[shape])
    with torch.device(device):
        model = Qwen3ForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # RMSNorm scales
                p.uniform_(0.75, 1.25)
            elif "embed_tokens" in name or "lm_head" in name:
                p.uniform_(-0.25, 0.25)
            else:
                bound = math.sqrt(3.0 / p.shape[1])
                p.uniform_(-bound, bound)
    model = model.to(torch.bfloat16)
    model.config.dtype = "bfloat16"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size="5GB")
    copy_tokenizer(out)


def with_numpy(shape: str, out: Path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "fixtures" / "synthetic_qwen3.py"), "--shape", shape,
                    "--out", str(out)], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True, action="append",
                    help="repeat --shape/--out to make several checkpoints in one process")
    ap.add_argument("--out", type=Path, required=True, action="append")
    ap.add_argument("--method", choices=["transformers", "numpy"], default="transformers")
    ap.add_argument("--device", default=None, help="torch device for the init (default: cuda if present)")
    args = ap.parse_args()
    if len(args.shape) != len(args.out):
        ap.error("give one --out per --shape")
    for shape, out in zip(args.shape, args.out):
        started = time.time()
        if args.method == "numpy":
            with_numpy(shape, out)
        else:
            import torch
            device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
            with_transformers(shape, out, device)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        # The marker a waiting script looks for: every file of the checkpoint is written.
        (out / COMPLETE).write_text(f"{shape}\n")
        print(f"{shape} checkpoint in {out}: {size / 1e9:.2f} GB, {time.time() - started:.1f} s",
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
