#!/usr/bin/env python3
"""Embedding throughput of three engines on one workload, one after another on this machine:
tealight's /v1/embeddings (a release build serving MODEL), sentence-transformers (torch f32,
the model's own layout) and llama-server `--embedding --pooling last` (the bf16 GGUF of the
same shape, if PEERS has one). Each engine is warmed up, then timed embedding every document;
tokens/s counts each engine's own tokens. Called by bench_pooling.sh.

    python scripts/bench/embeddings_reference.py --model DIR --tealight BIN [--peers DIR]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

WORDS = ("retrieval", "augmented", "generation", "needs", "embeddings", "of", "every", "chunk",
         "the", "index", "holds", "vectors", "for", "documents", "about", "rivers", "cities",
         "and", "gravity", "kernels", "servers", "tokens", "models", "queries")


def documents(count: int, words: int) -> list[str]:
    """Distinct documents of `words` words (no two share a prefix: no prefix-cache help)."""
    out = []
    for d in range(count):
        text = [f"Document {d}:"]
        text += [WORDS[(d * 7 + i * (d % 5 + 1)) % len(WORDS)] for i in range(words)]
        out.append(" ".join(text))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url}: server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"{url}: not healthy after {seconds} s")


def time_server(args: list[str], docs: list[str], log: Path) -> dict:
    port = free_port()
    proc = subprocess.Popen(args + ["--port", str(port)], stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 300)
        post(f"{url}/v1/embeddings", {"input": ["warm up", "the server"], "model": "m"})
        start = time.perf_counter()
        out = post(f"{url}/v1/embeddings", {"input": docs, "model": "m"})
        secs = time.perf_counter() - start
        assert len(out["data"]) == len(docs)
        tokens = out["usage"]["prompt_tokens"]
        return {"tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs}
    finally:
        proc.terminate()
        proc.wait(30)


def time_sentence_transformers(model: str, docs: list[str], threads: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    st = SentenceTransformer(model, device="cpu", model_kwargs={"dtype": torch.float32})
    st.encode(["warm up", "the model"])
    tokens = sum(len(st.tokenizer(d)["input_ids"]) for d in docs)
    start = time.perf_counter()
    st.encode(docs, batch_size=16)
    secs = time.perf_counter() - start
    return {"tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tealight", required=True)
    ap.add_argument("--peers", default=str(Path.home() / ".cache/tealight/peers"))
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--words", type=int, default=200)
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    docs = documents(args.docs, args.words)
    logs = Path("target/bench-embeddings")
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    results["tealight f32"] = time_server(
        [args.tealight, "serve", "--model", args.model, "--served-model-name", "m",
         "--host", "127.0.0.1", "--max-model-len", "2048", "--kv-cache-memory", "2GiB",
         "--disable-log-requests"], docs, logs / "tealight.log")
    results["sentence-transformers f32"] = time_sentence_transformers(args.model, docs, threads)
    gguf = Path(args.peers) / "models/qwen3-0.6b-bf16.gguf"
    server = next(Path(args.peers).glob("llama-cpp-python-*/vendor/llama.cpp/build/bin/llama-server"),
                  None)
    if gguf.exists() and server is not None:
        results["llama-server bf16"] = time_server(
            [str(server), "-m", str(gguf), "--embedding", "--pooling", "last", "--host",
             "127.0.0.1", "-c", "8192", "-b", "2048", "-ub", "2048", "-t", str(threads)],
            docs, logs / "llama-server.log")
    ours = results["tealight f32"]["tokens_per_s"]
    print(f"{args.docs} documents of ~{args.words} words, {threads} threads")
    print(f"{'engine':<28}{'tokens':>8}{'seconds':>10}{'tokens/s':>10}{'tealight ×':>12}")
    for name, r in results.items():
        print(f"{name:<28}{r['tokens']:>8}{r['seconds']:>10.1f}{r['tokens_per_s']:>10.1f}"
              f"{ours / r['tokens_per_s']:>12.2f}")


if __name__ == "__main__":
    main()
