"""Two alternating long sessions on a pool that holds one: time to first token of the session
that comes back, with the disk tier (--kv-offload-dir) and without, on one checkpoint, in one
run. Each session is a fixed list of token ids sent to /v1/completions (max_tokens 1, greedy):
turn 1 of A, turn 1 of B (evicts A), then A again (its whole prompt, as an agent resends it).

    python scripts/bench/kv_tiers.py --model DIR --tealight target/release/tealight \
        [--tokens 12000] [--kv-cache-dtype auto]
"""

import argparse
import json
import random
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

# The server start-up helpers the other serving benchmarks use (this directory is on the path).
from embeddings_reference import free_port, wait_healthy


def first_token(url: str, ids: list[int]) -> tuple[float, dict]:
    """Seconds to the first streamed token, and the usage the stream reports."""
    body = {"model": "m", "prompt": ids, "max_tokens": 1, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    request = urllib.request.Request(f"{url}/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    ttft, usage = None, {}
    with urllib.request.urlopen(request, timeout=3600) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and ttft is None:
                ttft = time.perf_counter() - started
            if chunk.get("usage"):
                usage = chunk["usage"]
    return ttft, usage


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def run(tealight: str, model: str, extra: list[str], a: list[int], b: list[int],
        log: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([tealight, "serve", "--model", model, "--served-model-name", "m",
                             "--port", str(port)] + extra,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc, 600)
        turns = {}
        for name, ids in [("A1", a), ("B1", b), ("A2", a)]:
            ttft, usage = first_token(url, ids)
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            turns[name] = {"ttft_s": round(ttft, 3), "cached_tokens": cached}
            print(f"  {name}: TTFT {ttft:.2f} s, cached {cached}", flush=True)
        turns["restored_blocks"] = metric(url, "tealight:kv_offload_restored_blocks_total")
        turns["stored_blocks"] = metric(url, "tealight:kv_offload_stored_blocks_total")
        return turns
    finally:
        proc.terminate()
        proc.wait(timeout=600)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tealight", required=True)
    p.add_argument("--tokens", type=int, default=12000)
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--bytes-per-token", type=int, required=True,
                   help="KV bytes per token at the chosen dtype (sizes the pool to one session)")
    args = p.parse_args()
    rng = random.Random(0)
    # Ordinary vocabulary ids (no special tokens): two unrelated sessions.
    a = [rng.randrange(1000, 100000) for _ in range(args.tokens)]
    b = [rng.randrange(1000, 100000) for _ in range(args.tokens)]
    # The pool holds one session and a little more, not two.
    pool_tokens = int(args.tokens * 1.25)
    common = ["--kv-cache-memory", str(pool_tokens * args.bytes_per_token),
              "--max-model-len", str(args.tokens + 16), "--kv-cache-dtype", args.kv_cache_dtype]
    logs = Path(tempfile.mkdtemp(prefix="kv-tiers-"))
    tier = logs / "tier"
    results = {}
    print("without a tier:", flush=True)
    results["no_tier"] = run(args.tealight, args.model, common, a, b, logs / "no-tier.log")
    print("with the disk tier:", flush=True)
    results["disk_tier"] = run(args.tealight, args.model,
                               common + ["--kv-offload-dir", str(tier)], a, b,
                               logs / "disk-tier.log")
    on_disk = sum(f.stat().st_size for f in tier.rglob("*.kv"))
    results["disk_tier"]["bytes_on_disk"] = on_disk
    speedup = results["no_tier"]["A2"]["ttft_s"] / results["disk_tier"]["A2"]["ttft_s"]
    results["returning_turn_speedup"] = round(speedup, 1)
    print(json.dumps(results, indent=2))
    shutil.rmtree(logs)


if __name__ == "__main__":
    main()
