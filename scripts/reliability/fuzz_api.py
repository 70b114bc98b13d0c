"""Fuzz a live `tealight serve` on the embedded tiny model.

Two phases against one server, while a prober asks `/health` every 100 ms:
1. schemathesis over the server's own `/openapi.json`: schema-valid and schema-violating bodies
   for every documented operation (its `not_a_server_error` check plus `hooks.error_is_shaped`).
2. Mutations schemathesis does not make: random bytes, truncated and re-typed JSON, deep
   nesting, wrong or missing content types, bad keys, lying Content-Length, over every route in
   ROUTES.

Passes when no response is >= 500, no connection is dropped, every error has its route's shape,
the server never died and `/health` always answered 200 (reported: its worst latency).

    python scripts/reliability/fuzz_api.py --binary target/debug/tealight --requests 10000
    python scripts/reliability/fuzz_api.py --binary target/debug/tealight --budget-s 60   # CI

A new route is one line in ROUTES (and its path in src/api/openapi.json for phase 1).
"""

import argparse
import collections
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import server as serve  # noqa: E402
from shapes import error_shape_problem  # noqa: E402

KEY = "fuzz-key"

# (method, path, a valid body): the mutation phase starts from these.
ROUTES = [
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}),
    ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 4}),
    ("POST", "/tokenize", {"prompt": "hi"}),
    ("POST", "/detokenize", {"tokens": [1, 2, 3]}),
    ("GET", "/v1/models", None),
    ("POST", "/v1/responses", {"input": "hi", "max_output_tokens": 4}),
    ("GET", "/v1/responses/resp_unknown", None),
    ("POST", "/v1/messages", {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}),
    ("POST", "/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "hi"}]}),
]


FLAGS = ["--api-key", KEY, "--max-model-len", "512", "--kv-cache-memory", "64MiB",
         "--max-num-seqs", "32", "--reasoning-parser", "qwen3", "--enable-auto-tool-choice",
         "--tool-call-parser", "hermes", "--disable-log-requests"]


class HealthProber(threading.Thread):
    """GET /health every 100 ms on a fresh connection; records failures and the worst latency."""

    def __init__(self, base):
        super().__init__(daemon=True)
        self.base, self.stop, self.worst, self.probes, self.failures = base, threading.Event(), 0.0, 0, []

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                code = requests.get(f"{self.base}/health", timeout=5).status_code
                if code != 200:
                    self.failures.append(f"/health {code}")
            except requests.RequestException as e:
                self.failures.append(f"/health: {e}")
            self.worst = max(self.worst, time.monotonic() - t)
            self.probes += 1
            self.stop.wait(0.1)


def operation_count():
    """Operations (path × method) in the published OpenAPI document: schemathesis' examples are per operation."""
    doc = json.loads((HERE.parent.parent / "src/api/openapi.json").read_text())
    return sum(len(methods) for methods in doc["paths"].values())


def run_schemathesis(base, venv_bin, max_examples, budget_s, seed, workdir):
    har = Path(workdir) / "schemathesis.har"
    cmd = [str(venv_bin / "schemathesis"), "run", f"{base}/openapi.json",
           "-H", f"Authorization: Bearer {KEY}", "--checks", "not_a_server_error,error_is_shaped",
           "--mode", "all", "--max-examples", str(max_examples), "--workers", "4",
           "--request-timeout", "120", "--seed", str(seed), "--no-shrink",
           "--suppress-health-check", "all", "--report", "har", "--report-har-path", str(har),
           "--warnings", "off", "--no-color"]
    if budget_s:
        cmd += ["--max-time", str(budget_s)]
    env = dict(os.environ, SCHEMATHESIS_HOOKS="hooks", PYTHONPATH=str(HERE))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    statuses = collections.Counter()
    if har.exists():
        for entry in json.loads(har.read_text())["log"]["entries"]:
            statuses[entry["response"]["status"]] += 1
    return out, statuses


def mutations(route, rng):
    """(headers, body bytes) variations of one route's valid body."""
    method, path, body = route
    base = json.dumps(body).encode() if body is not None else b"{}"
    auth = {"Authorization": f"Bearer {KEY}"}
    js = {"Content-Type": "application/json", **auth}
    yield js, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    yield js, base[: rng.randrange(len(base))]
    yield js, b"[" * 5000 + b"]" * 5000
    yield js, json.dumps({"messages": {"a": 1}, "prompt": 3.5, "tokens": "x"}).encode()
    if isinstance(body, dict):
        mutated = dict(body)
        key = rng.choice(list(mutated))
        mutated[key] = rng.choice([None, -1, 2**70, "", [], {}, [[]], "\u0000", 1e308, True, "x" * 1000])
        extra = rng.choice(["n", "temperature", "max_tokens", "top_logprobs", "logprobs", "stop",
                            "logit_bias", "seed", "tools", "tool_choice", "response_format",
                            "prompt_logprobs", "min_tokens", "stop_token_ids", "stream"])
        mutated[extra] = rng.choice([-(2**63), 2**64, -1, 0, 1e400 if False else 1e300, "nan", None,
                                     [1, "a"], {"1": "x"}, True, "\ud800" * 0 + "é" * 10])
        yield js, json.dumps(mutated).encode()
    yield {"Content-Type": rng.choice(["text/plain", "application/xml", "multipart/form-data",
                                       "application/json; charset=latin1", "", "*/*"]), **auth}, base
    yield {"Content-Type": "application/json"}, base  # no key
    yield {"Content-Type": "application/json", "Authorization": rng.choice(
        ["Bearer", "Basic abc", f"Bearer {KEY}x", "bearer  " + KEY + "  ", "\t"])}, base
    yield {**js, "Content-Length": str(len(base) + rng.randrange(1, 50))}, base  # lies: too long
    yield {**js, "Accept": "application/x-nothing", "X-Junk": "y" * 8000}, base


def raw_request(host, port, method, path, headers, body, timeout=60):
    """One request on a raw socket (so Content-Length can lie); returns (status, body) or raises."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if not any(k.lower() == "content-length" for k in headers):
        headers = {**headers, "Content-Length": str(len(body))}
    lines += [f"{k}: {v}" for k, v in headers.items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        if any(k.lower() == "content-length" and int(v) > len(body) for k, v in headers.items()):
            s.shutdown(socket.SHUT_WR)  # the promised bytes never come
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    raw = b"".join(chunks)
    if not raw:
        return None, b""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body_out, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body_out, data = body_out + data[:size], data[size + 2:]
        rest = body_out
    return status, rest


def run_mutations(port, count, budget_s, seed):
    rng = random.Random(seed)
    statuses, problems = collections.Counter(), []
    started, sent = time.monotonic(), 0
    while sent < count and (not budget_s or time.monotonic() - started < budget_s):
        route = rng.choice(ROUTES)
        for headers, body in mutations(route, rng):
            method = route[0] if route[0] != "GET" or not body else "GET"
            try:
                status, out = raw_request("127.0.0.1", port, method, route[1], headers, body)
            except (OSError, ValueError, IndexError) as e:
                problems.append(f"{route[1]}: connection failed: {e}")
                continue
            finally:
                sent += 1
            if status is None:
                problems.append(f"{route[1]}: connection closed without a response")
                continue
            statuses[status] += 1
            problem = error_shape_problem(route[1], status, out)
            if problem:
                problems.append(f"{method} {route[1]} {headers.get('Content-Type')!r}: {problem}")
    return sent, statuses, problems


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/debug/tealight")
    p.add_argument("--requests", type=int, default=10000, help="total requests to aim for")
    p.add_argument("--budget-s", type=float, default=0, help="wall-clock budget (0: none)")
    p.add_argument("--seed", type=int, default=17)
    args = p.parse_args()
    venv_bin = Path(sys.executable).parent
    port = serve.free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as work:
        log = open(Path(work) / "server.log", "w")
        server = serve.start(args.binary, port, FLAGS, log)
        prober = HealthProber(base)
        prober.start()
        started = time.monotonic()
        try:
            # Split: about 4/5 of the requests (and of the time) to schemathesis.
            ops = operation_count()
            examples = max(10, args.requests * 4 // 5 // ops)
            st_budget = int(args.budget_s * 0.7) if args.budget_s else 0
            out, st_statuses = run_schemathesis(base, venv_bin, examples, st_budget, args.seed, work)
            st_total = sum(st_statuses.values())
            remaining = max(args.requests - st_total, 200)
            mut_budget = max(args.budget_s - (time.monotonic() - started), 10) if args.budget_s else 0
            mut_total, mut_statuses, problems = run_mutations(port, remaining, mut_budget, args.seed)
            alive = server.poll() is None
            health = requests.get(f"{base}/health", timeout=5).status_code if alive else None
        finally:
            prober.stop.set()
            prober.join()
            serve.stop(server)
            log.close()
            server_log = (Path(work) / "server.log").read_text()
    elapsed = time.monotonic() - started
    all_statuses = st_statuses + mut_statuses
    five = sum(n for s, n in all_statuses.items() if s >= 500)
    print(f"schemathesis: {st_total} requests, exit {out.returncode}")
    print(f"mutations:    {mut_total} requests, {len(problems)} problems")
    print(f"total:        {st_total + mut_total} requests in {elapsed:.0f} s; statuses "
          f"{dict(sorted(all_statuses.items()))}; >= 500: {five}")
    print(f"/health:      {prober.probes} probes, worst {prober.worst * 1000:.0f} ms, "
          f"{len(prober.failures)} failures; server alive at the end: {alive} ({health})")
    ok = out.returncode == 0 and not problems and five == 0 and alive and health == 200 \
        and not prober.failures and "panicked" not in server_log
    if not ok:
        print(out.stdout[-6000:])
        print(out.stderr[-2000:])
        for line in problems[:30]:
            print("problem:", line)
        for line in prober.failures[:10]:
            print("health:", line)
        if "panicked" in server_log:
            print("server panicked:", server_log[server_log.index("panicked") - 500:][:2000])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
