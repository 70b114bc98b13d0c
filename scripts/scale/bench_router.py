#!/usr/bin/env python3
"""Replicas behind vllm-router on this machine, measured side by side in one run.

    .cache/venv-clients/bin/python scripts/scale/bench_router.py [--quick] [--out FILE.json]

1. Prefix-cache hit rate by routing policy: many chat sessions (each a long system prompt
   of its own, then new questions), sent with some concurrency through vllm-router over two
   replicas with round_robin, consistent_hash (keyed on an X-Session-Id header) and
   cache_aware; hit rates from the replicas' own /metrics counters. Once with a KV cache that
   holds every session, once with one that holds about half of them per replica.
2. Throughput: `tealight bench` (random prompts, fixed lengths) against one replica
   directly, one replica behind the router, and two replicas behind the router.
3. /metrics latency while a replica is loaded, scraped every 50 ms as the inference
   gateway's endpoint picker does, and the throughput cost of that scraping.

Uses target/release/tealight if built (else the test build). On a machine shared with other
work the absolute numbers move; the ratios inside one run are what to read.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replicas import (  # noqa: E402
    MODEL, ROOT, PrefixCounters, start_replica, start_router, tealight_binary,
)

LOG_DIR = ROOT / "target" / "scale-out"
VOCAB = ["river", "stone", "lamp", "orbit", "maple", "copper", "signal", "harbor", "quiet",
         "ember", "vector", "meadow", "canyon", "pixel", "tundra", "saffron", "glacier"]


def session_requests(seed: int, sessions: int, rounds: int, prefix_words: int):
    rng = random.Random(seed)
    prompts = [f"Session {seed}-{s}. " + " ".join(rng.choices(VOCAB, k=prefix_words))
               for s in range(sessions)]
    order = []
    for r in range(rounds):
        # Sessions come back in a shuffled order each round, as real users do.
        for s in rng.sample(range(sessions), sessions):
            order.append((f"user-{seed}-{s}", [
                {"role": "system", "content": prompts[s]},
                {"role": "user", "content": f"Question {r}: " + " ".join(rng.choices(VOCAB, k=8))},
            ]))
    return order


def run_sessions(router_url: str, workload, concurrency: int) -> tuple[float, list[float]]:
    latencies = []

    def one(item):
        user, messages = item
        start = time.perf_counter()
        # consistent_hash keys on this header (see tests/clients/test_router.py).
        r = requests.post(f"{router_url}/v1/chat/completions", timeout=600,
                          headers={"X-Session-Id": user}, json={
                              "model": MODEL, "messages": messages, "max_tokens": 8,
                              "ignore_eos": True})
        r.raise_for_status()
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, workload))
    return time.perf_counter() - start, latencies


def prompt_tokens(url: str, messages) -> int:
    r = requests.post(f"{url}/tokenize", json={"model": MODEL, "messages": messages}, timeout=60)
    r.raise_for_status()
    return r.json()["count"]


def hit_rates(args, kv_memory: str, label: str) -> tuple[list[dict], int]:
    """Rows per policy, and the prompt tokens of one session's request."""
    flags = ["--kv-cache-memory", kv_memory]
    # A context that fits the smallest cache tried here.
    replicas = [start_replica(LOG_DIR, flags, f"hits{i}", threads=1, max_model_len=1024)
                for i in range(2)]
    rows = []
    try:
        sample = session_requests(0, 1, 1, args.prefix_words)[0][1]
        tokens = prompt_tokens(replicas[0].url, sample)
        for seed, policy in enumerate(["round_robin", "consistent_hash", "cache_aware"]):
            router = start_router([r.url for r in replicas], policy, LOG_DIR)
            try:
                workload = session_requests(100 + seed, args.sessions, args.rounds,
                                            args.prefix_words)
                before = PrefixCounters.read(replicas)
                wall, latencies = run_sessions(router.url, workload, args.session_concurrency)
                delta = PrefixCounters.read(replicas).since(before)
            finally:
                router.stop()
            rows.append({
                "kv_cache": label, "policy": policy, "requests": len(workload),
                "hit_rate": round(delta.hit_rate, 3),
                "prompt_tokens_per_replica": [int(q) for q, _ in delta.per_replica],
                "req_per_s": round(len(workload) / wall, 2),
                "mean_latency_ms": round(1000 * statistics.mean(latencies), 1),
            })
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for r in replicas:
            r.stop()
    return rows, tokens


class Scraper:
    """Scrapes /metrics every `interval` seconds in the background, timing each scrape."""

    def __init__(self, url: str, interval: float = 0.05):
        self.url, self.interval = url, interval
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        session = requests.Session()
        while not self._stop.is_set():
            start = time.perf_counter()
            r = session.get(f"{self.url}/metrics", timeout=5)
            r.raise_for_status()
            self.times.append(time.perf_counter() - start)
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - start)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        ms = sorted(1000 * t for t in self.times)
        return {"scrapes": len(ms), "p50_ms": round(ms[len(ms) // 2], 2),
                "p99_ms": round(ms[int(len(ms) * 0.99)], 2), "max_ms": round(ms[-1], 2)}


def bench(url: str, args, tag: str) -> dict:
    out = LOG_DIR / ("bench-" + re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-") + ".json")
    cmd = [str(tealight_binary()), "bench", "--base-url", f"{url}/v1", "--model", MODEL,
           "--tokenizer", str(ROOT / "models" / "qwen3-tiny"), "--endpoint", "chat",
           "--input-len", str(args.input_len), "--output-len", str(args.output_len),
           "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.concurrency),
           "--seed", "1", "--no-progress", "--result-file", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    r = json.loads(out.read_text())
    assert r["failed"] == 0, r["failures"]
    return {"setup": tag, "req_per_s": round(r["request_throughput"], 2),
            "output_tok_per_s": round(r["output_throughput"], 1),
            "median_ttft_ms": round(r["median_ttft_ms"], 1),
            "median_tpot_ms": round(r["median_tpot_ms"], 2)}


def throughput(args) -> tuple[list[dict], dict]:
    rows = []
    flags = ["--kv-cache-memory", "256MiB"]
    one = start_replica(LOG_DIR, flags, "tp-single", threads=args.threads)
    try:
        rows.append(bench(one.url, args, f"1 replica direct (--threads {args.threads})"))
        print(json.dumps(rows[-1]), flush=True)
        with Scraper(one.url) as scraper:
            rows.append(bench(one.url, args, "1 replica direct, /metrics scraped every 50 ms"))
        print(json.dumps(rows[-1]), flush=True)
        loaded = scraper.summary()
        with Scraper(one.url) as idle:
            time.sleep(3)
        scrape = {"under_load": loaded, "idle": idle.summary()}
        print(json.dumps({"metrics_latency": scrape}), flush=True)
        router = start_router([one.url], "round_robin", LOG_DIR)
        try:
            rows.append(bench(router.url, args, "1 replica behind the router"))
            print(json.dumps(rows[-1]), flush=True)
        finally:
            router.stop()
    finally:
        one.stop()
    pair = [start_replica(LOG_DIR, flags, f"tp-pair{i}", threads=args.threads)
            for i in range(2)]
    try:
        for policy in ("round_robin", "cache_aware"):
            router = start_router([r.url for r in pair], policy, LOG_DIR)
            try:
                rows.append(bench(router.url, args, f"2 replicas behind the router ({policy})"))
                print(json.dumps(rows[-1]), flush=True)
            finally:
                router.stop()
    finally:
        for r in pair:
            r.stop()
    return rows, scrape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, to try it out")
    parser.add_argument("--sessions", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--prefix-words", type=int, default=300)
    parser.add_argument("--session-concurrency", type=int, default=4)
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="--threads of each replica")
    parser.add_argument("--part", choices=["all", "hits", "throughput"], default="all")
    parser.add_argument("--out", type=Path, default=LOG_DIR / "bench_router.json")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.rounds, args.num_prompts = 8, 3, 16
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    print(f"binary: {tealight_binary()}", flush=True)
    hits, rows, scrape = [], [], {}
    if args.part in ("all", "hits"):
        hits, session_tokens = hit_rates(args, "64MiB", "64 MiB: every session")
        # The embedded model keeps 1 KiB of KV per token (f32): a budget for about half of the
        # sessions' prompts on each replica (round robin needs all of them on both).
        tight_kib = args.sessions * session_tokens // 2
        tight, _ = hit_rates(args, f"{tight_kib}KiB", f"{tight_kib} KiB: half the sessions")
        hits += tight
    if args.part in ("all", "throughput"):
        rows, scrape = throughput(args)
    report = {"binary": str(tealight_binary()), "hit_rates": hits, "throughput": rows,
              "metrics_latency": scrape, "args": {k: str(v) for k, v in vars(args).items()}}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
