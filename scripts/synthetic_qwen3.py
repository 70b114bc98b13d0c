#!/usr/bin/env python3
"""Deterministic Qwen3 checkpoints with random weights, without torch.

The weights come from a counter-based generator (splitmix64) that `src/model/synthetic.rs`
implements bit for bit, so Rust tests can rebuild any of these checkpoints instead of
committing them, and transformers can load the very same files for reference outputs.

    python scripts/synthetic_qwen3.py --shape tiny --out models/qwen3-tiny
"""

import argparse
import json
import shutil
import struct
from pathlib import Path

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
ROOT = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = ROOT / "models" / "qwen3-tiny"

QWEN3_GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "temperature": 0.6,
    "top_k": 20,
    "top_p": 0.95,
}

# Shapes: `tiny` is the embedded default model (tied, head_dim = hidden/heads, rope_theta at the
# top level as Qwen3's hub configs have it); `tiny-untied` exercises the other layouts (untied
# lm_head, head_dim != hidden/heads, rope under `rope_parameters`, f16 on disk, two shards);
# `0.6b` and `4b` are the real Qwen3 shapes for benchmarks.
SHAPES = {
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32, tie_word_embeddings=True, rope_theta=1000000.0,
                 layout="legacy", storage="bfloat16", shards=1, seed=1),
    "tiny-untied": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=48, tie_word_embeddings=False, rope_theta=10000.0,
                        layout="rope_parameters", storage="float16", shards=2, seed=2),
    "tiny-k": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=64, tie_word_embeddings=True, rope_theta=1000000.0,
                   layout="legacy", storage="bfloat16", shards=1, seed=5),
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, rope_theta=1000000.0,
                 layout="legacy", storage="bfloat16", shards=1, seed=3),
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
               num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, rope_theta=1000000.0,
               layout="legacy", storage="bfloat16", shards=2, seed=4),
}
VOCAB = 151936
MAX_POSITIONS = 40960


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def uniform(seed: int, count: int) -> np.ndarray:
    """The i-th value is splitmix64(seed + (i+1)*golden) >> 40, scaled to [0, 1) in f32."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (np.arange(1, count + 1, dtype=np.uint64) * GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def tensor_values(model_seed: int, name: str, shape, kind: str) -> np.ndarray:
    """Uniform values: norms around 1, embeddings in [-0.25, 0.25), projections with variance 1/fan_in.

    Small embeddings keep the residual stream from being dominated by the input token, so a
    tied model does not just echo its last token and greedy text varies."""
    n = int(np.prod(shape))
    u = uniform(model_seed ^ fnv1a64(name), n)
    centered = u * np.float32(2.0) - np.float32(1.0)
    if kind == "norm":
        values = np.float32(1.0) + centered * np.float32(0.25)
    elif kind == "embedding":
        values = centered * np.float32(0.25)
    else:
        scale = np.float32(np.sqrt(3.0 / shape[1]))
        values = centered * scale
    return values.reshape(shape)


def tensor_specs(s):
    h, d = s["hidden_size"], s["head_dim"]
    q, kv, inter = s["num_attention_heads"] * d, s["num_key_value_heads"] * d, s["intermediate_size"]
    specs = [("model.embed_tokens.weight", (VOCAB, h), "embedding")]
    for i in range(s["num_hidden_layers"]):
        p = f"model.layers.{i}"
        specs += [
            (f"{p}.input_layernorm.weight", (h,), "norm"),
            (f"{p}.self_attn.q_proj.weight", (q, h), "linear"),
            (f"{p}.self_attn.k_proj.weight", (kv, h), "linear"),
            (f"{p}.self_attn.v_proj.weight", (kv, h), "linear"),
            (f"{p}.self_attn.o_proj.weight", (h, q), "linear"),
            (f"{p}.self_attn.q_norm.weight", (d,), "norm"),
            (f"{p}.self_attn.k_norm.weight", (d,), "norm"),
            (f"{p}.post_attention_layernorm.weight", (h,), "norm"),
            (f"{p}.mlp.gate_proj.weight", (inter, h), "linear"),
            (f"{p}.mlp.up_proj.weight", (inter, h), "linear"),
            (f"{p}.mlp.down_proj.weight", (h, inter), "linear"),
        ]
    specs.append(("model.norm.weight", (h,), "norm"))
    if not s["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (VOCAB, h), "embedding"))
    return specs


def to_storage(values: np.ndarray, storage: str):
    if storage == "float32":
        return values.astype("<f4").tobytes(), "F32"
    if storage == "float16":
        return values.astype("<f2").tobytes(), "F16"
    bits = values.astype(np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype("<u2").tobytes(), "BF16"


def write_safetensors(path: Path, tensors):
    """tensors: list of (name, shape, dtype_tag, bytes), written in the given order."""
    header, offset = {}, 0
    for name, shape, tag, data in tensors:
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for *_, data in tensors:
            f.write(data)


def config_json(s):
    cfg = {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "head_dim": s["head_dim"],
        "hidden_act": "silu",
        "hidden_size": s["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": s["intermediate_size"],
        "max_position_embeddings": MAX_POSITIONS,
        "max_window_layers": s["num_hidden_layers"],
        "model_type": "qwen3",
        "num_attention_heads": s["num_attention_heads"],
        "num_hidden_layers": s["num_hidden_layers"],
        "num_key_value_heads": s["num_key_value_heads"],
        "rms_norm_eps": 1e-06,
        "sliding_window": None,
        "tie_word_embeddings": s["tie_word_embeddings"],
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": VOCAB,
    }
    if s["layout"] == "legacy":
        cfg.update({"rope_scaling": None, "rope_theta": s["rope_theta"], "torch_dtype": s["storage"],
                    "transformers_version": "4.51.0"})
    else:
        cfg.update({"rope_parameters": {"rope_theta": s["rope_theta"], "rope_type": "default"},
                    "dtype": s["storage"], "transformers_version": "5.0.0"})
    return cfg


def write_checkpoint(shape: str, out: Path):
    s = SHAPES[shape]
    out.mkdir(parents=True, exist_ok=True)
    specs = tensor_specs(s)
    tensors = []
    for name, tshape, kind in specs:
        data, tag = to_storage(tensor_values(s["seed"], name, tshape, kind), s["storage"])
        tensors.append((name, tshape, tag, data))
    shards = s["shards"]
    if shards == 1:
        write_safetensors(out / "model.safetensors", tensors)
    else:
        per = -(-len(tensors) // shards)
        weight_map, total = {}, 0
        for k in range(shards):
            part = tensors[k * per:(k + 1) * per]
            fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(out / fname, part)
            for name, *_ , data in part:
                weight_map[name] = fname
                total += len(data)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(config_json(s), indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(QWEN3_GENERATION_CONFIG, indent=2) + "\n")
    if out.resolve() != TOKENIZER_DIR.resolve():
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(TOKENIZER_DIR / f, out / f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    write_checkpoint(args.shape, args.out)
    print(f"wrote {args.shape} checkpoint to {args.out}")


if __name__ == "__main__":
    main()
