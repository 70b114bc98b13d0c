#!/usr/bin/env python3
"""Reference data for tests/gguf.rs, from tools independent of tealight's own GGUF code.

For each test file (a synthetic checkpoint written as GGUF by `tealight debug gguf`, the same
writer the tests use, so the test can check it still writes the same bytes):
  - its sha256;
  - every tensor dequantized by gguf-py (PyPI `gguf`, numpy only): sum, sum of squares and
    values at fixed indices, which the test compares with tealight's dequantization;
  - with --llama-server (llama.cpp's server, see scripts/compare/build_llama_server.sh): the
    prompt's token ids by llama.cpp's tokenizer and its greedy continuation with the top-2
    log-probabilities at each step, which the test uses on positions where llama.cpp's choice
    is decisive.

    python -m venv .venv && .venv/bin/pip install gguf numpy
    .venv/bin/python scripts/gguf_fixtures.py --tealight target/release/tealight \
        [--llama-server /path/to/llama-server] --out tests/fixtures/gguf.json
"""

import argparse
import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_qwen3  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FILES = [("tiny-k", "q8_0"), ("tiny-k", "q4_k_m"), ("tiny-k", "q5_k"), ("tiny-untied", "q8_0")]
PROMPT = "<|im_start|>user\nWhat is a GGUF file?<|im_end|>\n<|im_start|>assistant\n"
SAMPLES = 16
STEPS = 12


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensor_stats(path: Path) -> dict:
    stats = {}
    for t in GGUFReader(path).tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        # Fixed, spread-out indices (a multiplicative walk), the same for every run.
        idx = [(i * 2654435761 + 12345) % values.size for i in range(SAMPLES)]
        stats[t.name] = {
            "type": t.tensor_type.name,
            "elements": int(values.size),
            "sum": float(values.sum()),
            "sum_squares": float((values * values).sum()),
            "samples": [[int(i), float(values[i])] for i in idx],
        }
    return stats


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def llama_greedy(server: str, path: Path) -> dict:
    port = free_port()
    proc = subprocess.Popen([server, "-m", str(path), "-t", "2", "--host", "127.0.0.1", "--port", str(port),
                             "-c", "512", "-np", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except Exception:
                time.sleep(0.5)
        ids = post(f"{base}/tokenize", {"content": PROMPT, "parse_special": True})["tokens"]
        out = post(f"{base}/completion", {
            "prompt": ids, "n_predict": STEPS, "temperature": 0, "n_probs": 2, "cache_prompt": False,
            "return_tokens": True, "post_sampling_probs": False, "ignore_eos": True,
        })
        steps = []
        for p in out["completion_probabilities"]:
            top = p["top_logprobs"]
            steps.append({"id": p["id"], "top_ids": [t["id"] for t in top],
                          "top_logprobs": [t["logprob"] for t in top]})
        return {"prompt_ids": ids, "tokens": out["tokens"], "steps": steps}
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tealight", required=True, help="the tealight binary")
    ap.add_argument("--llama-server", help="llama.cpp's llama-server, for the greedy reference")
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/gguf.json"))
    args = ap.parse_args()
    result = {"prompt": PROMPT, "files": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for shape, plan in FILES:
            ckpt = tmp / shape
            if not ckpt.exists():
                synthetic_qwen3.write_checkpoint(shape, ckpt)
            path = tmp / f"{shape}-{plan}.gguf"
            subprocess.run([args.tealight, "debug", "gguf", "--model", str(ckpt), "--out", str(path),
                            "--type", plan], check=True)
            entry = {"shape": shape, "plan": plan, "sha256": sha256(path), "tensors": tensor_stats(path)}
            if args.llama_server:
                entry["llama_cpp"] = llama_greedy(args.llama_server, path)
            result["files"].append(entry)
            print(f"{shape} {plan}: {len(entry['tensors'])} tensors", file=sys.stderr)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
