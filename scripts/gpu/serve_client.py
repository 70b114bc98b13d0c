#!/usr/bin/env python3
"""A small OpenAI-API client for the GPU scripts (standard library only; threads, streamed SSE).

    serve_client.py wait    --base URL [--timeout S]
    serve_client.py streams --base URL --model NAME --tokenizer DIR [--streams 64]
    serve_client.py bench   --base URL --model NAME --tokenizer DIR --concurrency 1 16 64 256 \
                            [--input-len 1024 --output-len 128 --weights-dir DIR]

`streams`: N greedy completions, first one at a time, then all at once; each concurrent text must
equal its solo text. `bench`: `vllm bench serve`'s method (random prompts of a fixed token length,
ignore_eos, fixed output length, max concurrency, include_usage): request/s, output and total
tok/s, TTFT, TPOT, ITL and E2EL (mean, p50, p99), and the single-stream decode rate against the
HBM roofline (bytes of weights + KV read per token / bandwidth).
"""

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def connection(base, timeout=600):
    u = urllib.parse.urlparse(base)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout), u.path.rstrip("/")


def alive(pid):
    if not pid:
        return True
    try:
        import os

        os.kill(pid, 0)
        return True
    except OSError:
        return False


def wait(args):
    deadline = time.time() + args.timeout
    while time.time() < deadline and alive(args.pid):
        try:
            # A short timeout per probe: a server that accepts but never answers must not hold
            # the wait past its deadline.
            conn, _ = connection(args.base, timeout=max(0.5, min(5.0, deadline - time.time())))
            conn.request("GET", "/health")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                print("server is up", file=sys.stderr)
                return 0
        except OSError:
            pass
        time.sleep(1)
    why = "the server exited" if not alive(args.pid) else f"no answer within {args.timeout} s"
    print(f"{args.base}/health: {why}", file=sys.stderr)
    return 1


def complete(base, api_key, payload):
    """Streams one completion. Returns dict(text, ttft, e2e, chunk_times, completion_tokens, prompt_tokens)."""
    conn, prefix = connection(base)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    body = dict(payload, stream=True, stream_options={"include_usage": True})
    start = time.perf_counter()
    conn.request("POST", f"{prefix}/v1/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    text, times, usage = [], [], None
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        obj = json.loads(data)
        if obj.get("usage"):
            usage = obj["usage"]
        for choice in obj.get("choices") or []:
            if choice.get("text"):
                text.append(choice["text"])
                times.append(time.perf_counter() - start)
    end = time.perf_counter() - start
    conn.close()
    return {
        "text": "".join(text),
        "ttft": times[0] if times else end,
        "e2e": end,
        "chunk_times": times,
        "completion_tokens": (usage or {}).get("completion_tokens", len(times)),
        "prompt_tokens": (usage or {}).get("prompt_tokens", 0),
    }


def random_prompts(tokenizer_dir, n, length, seed):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        ids = [rng.randrange(151643) for _ in range(length)]
        text = tok.decode(ids)
        ids = tok.encode(text, add_special_tokens=False).ids[:length]
        prompts.append(tok.decode(ids))
    return prompts


def streams(args):
    prompts = random_prompts(args.tokenizer, args.streams, args.input_len, 11)
    payloads = [{"model": args.model, "prompt": p, "max_tokens": args.output_len, "temperature": 0,
                 "ignore_eos": True} for p in prompts]
    solo = [complete(args.base, args.api_key, p)["text"] for p in payloads]
    with ThreadPoolExecutor(args.streams) as pool:
        together = list(pool.map(lambda p: complete(args.base, args.api_key, p)["text"], payloads))
    bad = [i for i, (a, b) in enumerate(zip(solo, together)) if a != b]
    for i in bad:
        print(f"stream {i}: concurrent text differs from solo", file=sys.stderr)
    print(f"serve streams: {len(payloads) - len(bad)} of {len(payloads)} identical to their solo runs")
    return 1 if len(bad) > args.allow_mismatch else 0


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def weights_bytes(model_dir):
    total = 0
    for f in Path(model_dir).glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                total += v["data_offsets"][1] - v["data_offsets"][0]
    return total


def kv_bytes_per_position(model_dir, dtype_size=2):
    cfg = json.load(open(Path(model_dir) / "config.json"))
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    return cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * head_dim * dtype_size


def bench(args):
    rows = []
    for c in args.concurrency:
        n = max(args.min_prompts, args.prompts_per_concurrency * c)
        prompts = random_prompts(args.tokenizer, n, args.input_len, 100 + c)
        payloads = [{"model": args.model, "prompt": p, "max_tokens": args.output_len, "temperature": 0,
                     "ignore_eos": True} for p in prompts]
        # Warm-up (CUDA module loads, allocator growth) outside the timed run.
        complete(args.base, args.api_key, dict(payloads[0], max_tokens=4))
        lock = threading.Lock()
        results = []

        def run(p):
            r = complete(args.base, args.api_key, p)
            with lock:
                results.append(r)

        started = time.perf_counter()
        with ThreadPoolExecutor(c) as pool:
            list(pool.map(run, payloads))
        duration = time.perf_counter() - started
        out_tokens = sum(r["completion_tokens"] for r in results)
        in_tokens = sum(r["prompt_tokens"] for r in results)
        ttft = [r["ttft"] * 1e3 for r in results]
        tpot = [(r["e2e"] - r["ttft"]) * 1e3 / (r["completion_tokens"] - 1)
                for r in results if r["completion_tokens"] > 1]
        itl = [(b - a) * 1e3 for r in results for a, b in zip(r["chunk_times"], r["chunk_times"][1:])]
        e2el = [r["e2e"] * 1e3 for r in results]
        row = {
            "concurrency": c, "requests": len(results), "duration_s": duration,
            "request_per_s": len(results) / duration, "output_tok_s": out_tokens / duration,
            "total_tok_s": (in_tokens + out_tokens) / duration, "mean_input_tokens": in_tokens / len(results),
        }
        for name, xs in [("ttft_ms", ttft), ("tpot_ms", tpot), ("itl_ms", itl), ("e2el_ms", e2el)]:
            row[name] = {"mean": statistics.fmean(xs) if xs else float("nan"), "p50": pct(xs, 50), "p99": pct(xs, 99)}
        rows.append(row)
        print(f"c={c:<4} {len(results):>4} req {duration:7.1f} s  out {row['output_tok_s']:8.1f} tok/s  "
              f"TTFT mean {row['ttft_ms']['mean']:8.1f} ms p99 {row['ttft_ms']['p99']:8.1f}  "
              f"TPOT mean {row['tpot_ms']['mean']:6.2f} ms p99 {row['tpot_ms']['p99']:6.2f}", flush=True)

    print(f"\n{'conc':>5} {'req/s':>7} {'out tok/s':>10} {'tot tok/s':>10} {'TTFT ms':>9} {'p99':>8} "
          f"{'TPOT ms':>8} {'p99':>7} {'ITL ms':>7} {'E2EL ms':>9}")
    for r in rows:
        print(f"{r['concurrency']:>5} {r['request_per_s']:>7.2f} {r['output_tok_s']:>10.1f} {r['total_tok_s']:>10.1f} "
              f"{r['ttft_ms']['mean']:>9.1f} {r['ttft_ms']['p99']:>8.1f} {r['tpot_ms']['mean']:>8.2f} "
              f"{r['tpot_ms']['p99']:>7.2f} {r['itl_ms']['mean']:>7.2f} {r['e2el_ms']['mean']:>9.1f}")
    single = next((r for r in rows if r["concurrency"] == 1), None)
    if single and args.weights_dir and single["tpot_ms"]["mean"] > 0:
        wb = weights_bytes(args.weights_dir)
        ctx = single["mean_input_tokens"] + args.output_len / 2
        kv = kv_bytes_per_position(args.weights_dir) * ctx
        roofline = args.bandwidth / (wb + kv)
        rate = 1e3 / single["tpot_ms"]["mean"]
        print(f"\nc=1 decode: {rate:.1f} tok/s = {rate / roofline:.1%} of the HBM roofline {roofline:.0f} tok/s "
              f"(weights {wb / 1e9:.2f} GB + KV {kv / 1e6:.0f} MB per token at {args.bandwidth / 1e12:.2f} TB/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--base", required=True)
    w.add_argument("--timeout", type=float, default=120)
    w.add_argument("--pid", type=int, default=0, help="give up when this process has exited")
    for name in ["streams", "bench"]:
        p = sub.add_parser(name)
        p.add_argument("--base", required=True)
        p.add_argument("--model", required=True)
        p.add_argument("--tokenizer", required=True, help="folder with tokenizer.json")
        p.add_argument("--api-key", default=None)
        p.add_argument("--input-len", type=int, default=1024 if name == "bench" else 200)
        p.add_argument("--output-len", type=int, default=128 if name == "bench" else 32)
    s = sub.choices["streams"]
    s.add_argument("--streams", type=int, default=64)
    s.add_argument("--allow-mismatch", type=int, default=0)
    b = sub.choices["bench"]
    b.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    b.add_argument("--prompts-per-concurrency", type=int, default=2)
    b.add_argument("--min-prompts", type=int, default=8)
    b.add_argument("--weights-dir", default=None)
    b.add_argument("--bandwidth", type=float, default=3.35e12, help="HBM bytes/s (H100 SXM: 3.35e12)")
    b.add_argument("--json", default=None)
    args = ap.parse_args()
    sys.exit({"wait": wait, "streams": streams, "bench": bench}[args.cmd](args))


if __name__ == "__main__":
    main()
