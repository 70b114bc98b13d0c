#!/usr/bin/env python3
"""Helpers of scripts/gpu/first-contact.sh (standard library, plus the openai SDK for `sdk`).

    first_contact.py sdk --base URL --api-key KEY --model NAME --metrics FILE [--timeout S]
    first_contact.py device --base URL --want cuda --out FILE
    first_contact.py bench-report --results A.json B.json ... --model-dir DIR --gpu NAME
                                  --out bench.json --metrics FILE
    first_contact.py summary --stages STAGES.tsv --meta META.json --metrics-dir DIR --out summary.json

`sdk`: a discarded request that puts the prompt in the prefix cache, then one chat completion and
the same request streamed, greedy, through the openai SDK, then a seeded sampled completion twice
(Qwen3's defaults); passes when all end with a finish_reason and usage, the text is not empty, the
streamed text and reasoning equal the non-streamed ones, and the seed repeats its text. Any client
error (a refused connection, a timeout) is one of the problems reported.
`device`: the server's own report of its device (`tealight:device_info` on /metrics) must name
the device wanted: `--device auto` falls back to the CPU silently.
`bench-report`: the `tealight bench` result files as one table, and the single-stream decode rate
as a fraction of the HBM roofline (weights + KV bytes read per token over the bandwidth of the
GPU named). `summary`: summary.json from the stage lines the script wrote.
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

from serve_client import kv_bytes_per_position, weights_bytes

# HBM bandwidth by GPU name (bytes/s): the vendors' datasheet figures. The first match wins.
BANDWIDTHS = [
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100 NVL", 3.9e12),
    ("H100", 3.35e12),
    ("H800", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100 80GB PCIe", 1.935e12),
    ("A100", 1.555e12),
]


def bandwidth_of(gpu):
    for name, bw in BANDWIDTHS:
        if name.lower() in (gpu or "").lower():
            return bw
    return None


def sdk(args):
    """Runs the checks, catching any client error into the problems (the stage reports them)."""
    problems, metrics = [], {}
    try:
        sdk_checks(args, problems, metrics)
    except Exception as e:  # noqa: BLE001 - a connection error or a bad reply is a finding
        problems.append(f"{type(e).__name__}: {e}"[:400])
    metrics["problems"] = problems
    Path(args.metrics).write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(json.dumps(metrics, ensure_ascii=False))
    for p in problems:
        print(f"sdk: {p}", file=sys.stderr)
    return 1 if problems else 0


def reasoning_of(obj):
    """The reasoning text of a message or delta under either name (vLLM renamed it)."""
    return getattr(obj, "reasoning_content", None) or getattr(obj, "reasoning", None) or ""


def sdk_checks(args, problems, metrics):
    import openai
    from openai import OpenAI

    # Short connection timeouts: a dead server is reported in seconds, not at the deadline.
    # (`openai.Timeout` is the HTTP client's timeout type, whichever client the SDK uses.)
    try:
        timeout = openai.Timeout(args.timeout, connect=min(5.0, args.timeout))
    except (AttributeError, TypeError):
        timeout = args.timeout
    client = OpenAI(base_url=args.base, api_key=args.api_key, max_retries=0, timeout=timeout)
    messages = [
        {"role": "system", "content": "你是一个小助手"},
        {"role": "user", "content": "Name three colours of the sea."},
    ]
    request = dict(model=args.model, messages=messages, max_tokens=args.max_tokens, temperature=0, seed=1)

    # The prompt's blocks go into the prefix cache first, so that both compared requests reuse
    # them and prefill the same tail: the same GEMM shapes, hence the same bf16 rounding (a
    # first request prefilling everything and a second prefilling the tail need not agree on a
    # near-tie).
    client.chat.completions.create(**dict(request, max_tokens=1))

    started = time.perf_counter()
    chat = client.chat.completions.create(**request)
    chat_s = time.perf_counter() - started
    choice = chat.choices[0]
    text = choice.message.content or ""
    reasoning = reasoning_of(choice.message)
    metrics["chat"] = {"seconds": round(chat_s, 3), "finish_reason": choice.finish_reason,
                       "completion_tokens": chat.usage.completion_tokens if chat.usage else None,
                       "text": text[:120], "reasoning": reasoning[:120]}
    if choice.finish_reason not in ("stop", "length"):
        problems.append(f"chat finish_reason {choice.finish_reason!r}")
    if not chat.usage or chat.usage.completion_tokens < 1:
        problems.append(f"chat usage {chat.usage}")
    if chat.model != args.model:
        problems.append(f"chat model {chat.model!r}, asked {args.model!r}")
    if not (text or reasoning):
        problems.append("the completion has no text and no reasoning")

    started = time.perf_counter()
    first = None
    parts, thoughts, finish, usage, chunks = [], [], None, None, 0
    stream = client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        chunks += 1
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta and (c.delta.content or reasoning_of(c.delta)):
                first = first or time.perf_counter() - started
                parts.append(c.delta.content or "")
                thoughts.append(reasoning_of(c.delta))
            if c.finish_reason:
                finish = c.finish_reason
    stream_s = time.perf_counter() - started
    streamed, streamed_reasoning = "".join(parts), "".join(thoughts)
    metrics["stream"] = {"seconds": round(stream_s, 3), "ttft_s": round(first, 3) if first else None,
                         "chunks": chunks, "finish_reason": finish,
                         "completion_tokens": usage.completion_tokens if usage else None}
    if finish not in ("stop", "length"):
        problems.append(f"stream finish_reason {finish!r}")
    if not usage or usage.completion_tokens < 1:
        problems.append(f"stream usage {usage}")
    if streamed != text:
        problems.append(f"streamed text differs from the completion: {streamed[:60]!r} vs {text[:60]!r}")
    if streamed_reasoning != reasoning:
        problems.append(f"streamed reasoning differs from the completion's: {streamed_reasoning[:60]!r} vs "
                        f"{reasoning[:60]!r}")

    # Sampled with Qwen3's defaults and a seed (the device sampler's path on a GPU): the same
    # seed gives the same text. Both draws run the same shapes (the prompt is cached by now).
    sampled = dict(request, temperature=0.6, top_p=0.95, seed=7, extra_body={"top_k": 20})
    started = time.perf_counter()
    draws = [client.chat.completions.create(**sampled) for _ in range(2)]
    sampled_s = time.perf_counter() - started
    texts = [(d.choices[0].message.content or "") + reasoning_of(d.choices[0].message) for d in draws]
    metrics["sampled"] = {"seconds": round(sampled_s, 3), "same_text_for_same_seed": texts[0] == texts[1],
                          "text": texts[0][:120]}
    if any(d.choices[0].finish_reason not in ("stop", "length") for d in draws):
        problems.append(f"sampled finish_reason {[d.choices[0].finish_reason for d in draws]}")
    if texts[0] != texts[1]:
        problems.append(f"the same seed gave different texts: {texts[0][:60]!r} vs {texts[1][:60]!r}")
    if not texts[0]:
        problems.append("the sampled completion has no text")


def device(args):
    """The device the server reports (`tealight:device_info` on /metrics) against the one wanted."""
    import urllib.request

    found, error = None, None
    try:
        with urllib.request.urlopen(f"{args.base}/metrics", timeout=args.timeout) as r:
            body = r.read().decode()
        found = re.search(r'^tealight:device_info\{([^}]*)\}', body, re.M)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1))) if found else {}
    except OSError as e:
        error, labels = f"{type(e).__name__}: {e}", {}
    dev = labels.get("device")
    ok = bool(dev) and (dev == args.want or dev.startswith(args.want + ":"))
    report = {"device": dev, "attention_backend": labels.get("attention_backend"), "want": args.want,
              "ok": ok}
    if error:
        report["error"] = error
    elif not found:
        report["error"] = "no tealight:device_info on /metrics"
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return 0 if ok else 1


def bench_report(args):
    weights = weights_bytes(args.model_dir)
    kv_per_token = kv_bytes_per_position(args.model_dir, args.kv_bytes)
    bw = bandwidth_of(args.gpu)
    levels, problems = [], []
    for path in args.results:
        r = json.loads(Path(path).read_text())
        c = r.get("max_concurrency")
        level = {k: r.get(k) for k in (
            "max_concurrency", "num_prompts", "completed", "failed", "duration", "output_throughput",
            "total_token_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
            "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms")}
        if r.get("failed") or r.get("completed") != r.get("num_prompts"):
            problems.append(f"c={c}: {r.get('completed')} of {r.get('num_prompts')} completed, "
                            f"{r.get('failed')} failed {r.get('failures')}")
        levels.append(level)
    single = next((lv for lv in levels if lv["max_concurrency"] == 1), None)
    roofline = None
    if single and single.get("mean_tpot_ms"):
        # KV read per decoded token at the mean context of the decode phase.
        context = args.input_len + args.output_len / 2
        bytes_per_token = weights + kv_per_token * context
        rate = 1000.0 / single["mean_tpot_ms"]
        roofline = {
            "decode_tok_s": round(rate, 1),
            "weights_bytes": weights,
            "kv_bytes_per_token_read": int(kv_per_token * context),
            "bandwidth_bytes_s": bw,
            "roofline_tok_s": round(bw / bytes_per_token, 1) if bw else None,
            "fraction": round(rate * bytes_per_token / bw, 3) if bw else None,
            "gpu": args.gpu,
        }
    report = {"levels": levels, "single_stream_vs_roofline": roofline, "problems": problems}
    Path(args.out).write_text(json.dumps(report, indent=2))
    Path(args.metrics).write_text(json.dumps(report, indent=2))
    print(f"{'c':>4} {'prompts':>7} {'failed':>6} {'out tok/s':>10} {'TTFT ms':>9} {'TPOT ms':>8} "
          f"{'ITL p99':>8} {'E2EL ms':>9}")
    for lv in levels:
        f = lambda k: lv.get(k) if lv.get(k) is not None else float("nan")  # noqa: E731
        print(f"{lv['max_concurrency']:>4} {lv['num_prompts']:>7} {lv['failed']:>6} {f('output_throughput'):>10.1f} "
              f"{f('mean_ttft_ms'):>9.1f} {f('mean_tpot_ms'):>8.2f} {f('p99_itl_ms'):>8.2f} {f('mean_e2el_ms'):>9.1f}")
    if roofline:
        if roofline["fraction"] is not None:
            print(f"c=1 decode {roofline['decode_tok_s']} tok/s = {roofline['fraction']:.1%} of the HBM roofline "
                  f"({roofline['roofline_tok_s']} tok/s at {bw / 1e12:.2f} TB/s, {args.gpu})")
        else:
            print(f"c=1 decode {roofline['decode_tok_s']} tok/s (no HBM figure for {args.gpu!r})")
    for p in problems:
        print(f"bench: {p}", file=sys.stderr)
    return 1 if problems else 0


def summary(args):
    meta = json.loads(Path(args.meta).read_text()) if Path(args.meta).exists() else {}
    stages = []
    if Path(args.stages).exists():
        for line in Path(args.stages).read_text().splitlines():
            if not line.strip():
                continue
            stage, name, status, seconds, budget, detail = (line.split("\t") + [""] * 6)[:6]
            entry = {"stage": stage, "name": name, "status": status, "seconds": int(seconds or 0),
                     "budget_s": int(budget or 0), "detail": detail}
            metrics = Path(args.metrics_dir) / f"metrics-{stage}.json"
            if metrics.exists():
                try:
                    entry["metrics"] = json.loads(metrics.read_text())
                except json.JSONDecodeError as e:
                    entry["metrics"] = {"unreadable": str(e)}
            stages.append(entry)
    counts = {s: sum(1 for e in stages if e["status"] == s) for s in ("PASS", "FAIL", "SKIP")}
    # The verdict covers the stages that settle the GPU question (setup and a-e); the quantized
    # stage f is reported beside it, so that its cost can never fail a run whose a-e passed.
    core = [e for e in stages if e["stage"] in args.verdict_stages.split()]
    if any(e["status"] == "FAIL" for e in core):
        verdict = "FAIL"
    elif core and all(e["status"] == "PASS" for e in core):
        verdict = "PASS"
    else:
        verdict = "INCOMPLETE"
    extra = {e["stage"]: e["status"] for e in stages if e["stage"] not in args.verdict_stages.split()}
    doc = dict(meta, verdict=verdict, verdict_stages=args.verdict_stages.split(), other_stages=extra,
               stages=stages, passed=counts["PASS"], failed=counts["FAIL"], skipped=counts["SKIP"])
    Path(args.out).write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("sdk")
    p.add_argument("--base", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--timeout", type=float, default=120, help="seconds per request (the stage's time left)")
    p.add_argument("--metrics", required=True)
    p = sub.add_parser("device")
    p.add_argument("--base", required=True, help="the server's root URL (no /v1)")
    p.add_argument("--want", required=True, help="cpu, cuda or cuda:N")
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--out", required=True)
    p = sub.add_parser("bench-report")
    p.add_argument("--results", nargs="+", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--gpu", default="")
    p.add_argument("--input-len", type=int, default=1024)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--kv-bytes", type=int, default=2, help="bytes per KV element (bf16: 2)")
    p.add_argument("--out", required=True)
    p.add_argument("--metrics", required=True)
    p = sub.add_parser("summary")
    p.add_argument("--stages", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--metrics-dir", required=True)
    p.add_argument("--verdict-stages", default="setup a b c d e")
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    return {"sdk": sdk, "device": device, "bench-report": bench_report, "summary": summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
