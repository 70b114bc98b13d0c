#!/usr/bin/env python3
"""Reranking latency of one query against many documents, one engine after the other on this
machine: tealight's /v1/rerank (a release build serving MODEL with --task score) and
transformers (f32) running Qwen3-Reranker's model-card scoring in batches, as its card does.
Both score the same prompts (the card's prefix, pair and suffix). Called by bench_pooling.sh.

    python scripts/bench/rerank_reference.py --model DIR --tealight BIN [--docs 100]
"""

import argparse
import os
import time
from pathlib import Path

from embeddings_reference import documents, free_port, post, wait_healthy  # noqa: E402

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QUERY = "Which documents talk about rivers and cities?"


def time_tealight(binary: str, model: str, docs: list[str], log: Path) -> float:
    import subprocess

    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve", "--model", model, "--task", "score", "--served-model-name", "m",
         "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
         "--kv-cache-memory", "2GiB", "--disable-log-requests"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 300)
        post(f"{url}/v1/rerank", {"query": "warm up", "documents": ["a", "b"]})
        start = time.perf_counter()
        out = post(f"{url}/v1/rerank", {"query": QUERY, "documents": docs})
        secs = time.perf_counter() - start
        assert len(out["results"]) == len(docs)
        return secs
    finally:
        proc.terminate()
        proc.wait(30)


def time_transformers(model: str, docs: list[str], threads: int, batch: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    prefix = tok.encode(PREFIX, add_special_tokens=False)
    suffix = tok.encode(SUFFIX, add_special_tokens=False)

    def scores(texts: list[str]) -> list[float]:
        pairs = [f"<Instruct>: {INSTRUCTION}\n<Query>: {QUERY}\n<Document>: {d}" for d in texts]
        enc = tok(pairs, padding=False, truncation=False, return_attention_mask=False)
        ids = [prefix + x + suffix for x in enc["input_ids"]]
        padded = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = lm(**padded).logits[:, -1, :]
        pair = torch.stack([logits[:, no], logits[:, yes]], dim=1)
        return torch.nn.functional.log_softmax(pair, dim=1)[:, 1].exp().tolist()

    scores(["warm up", "the model"])
    start = time.perf_counter()
    for i in range(0, len(docs), batch):
        scores(docs[i:i + batch])
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tealight", required=True)
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--words", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    docs = documents(args.docs, args.words)
    logs = Path("target/bench-embeddings")
    logs.mkdir(parents=True, exist_ok=True)
    ours = time_tealight(args.tealight, args.model, docs, logs / "tealight-rerank.log")
    theirs = time_transformers(args.model, docs, threads, args.batch)
    print(f"rerank: 1 query × {args.docs} documents of ~{args.words} words, {threads} threads")
    print(f"{'engine':<36}{'seconds':>10}{'tealight ×':>12}")
    print(f"{'tealight /v1/rerank f32':<36}{ours:>10.2f}{1.0:>12.2f}")
    print(f"{f'transformers f32, batches of {args.batch}':<36}{theirs:>10.2f}{theirs / ours:>12.2f}")


if __name__ == "__main__":
    main()
