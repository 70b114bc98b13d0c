"""Soak a live `tealight serve` on the embedded tiny model.

`--concurrency` clients (128 by default) each keep one stream open at a time for `--duration`
seconds, with mixed parameters (chat and completions, n, logprobs, stop strings, seeds, tools,
guided JSON, ignore_eos); a quarter of the streams are abandoned mid-way. `/metrics` is scraped
every 50 ms throughout. A warm-up of the same load runs first, so that the resident-memory
baseline is taken after every allocation pool has been touched once.

Passes when: no response is other than 200 and no stream carries an error; every kept stream
ends with a finish_reason per choice and `[DONE]`; its usage is exact (prompt tokens equal
/tokenize's count, completion tokens equal the tokens streamed, counted by their logprob
entries, or `max_tokens` x n when the output had to run to length); guided outputs parse as
JSON; KV blocks in use return to 0; resident memory ends within 5 % of the baseline.

    python scripts/reliability/soak.py --binary target/release/tealight --duration 600      # the full soak
    python scripts/reliability/soak.py --binary target/debug/tealight --duration 30 --warmup 10 --concurrency 48
"""

import argparse
import collections
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as serve  # noqa: E402

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}}
GUIDED = {"type": "json_schema", "json_schema": {"name": "point", "schema": {
    "type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
    "required": ["x", "y"], "additionalProperties": False}}}
TOPICS = ["the sea", "a cat", "prime numbers", "Rust", "the moon", "bread", "trains", "rain"]


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Scraper(threading.Thread):
    """GET /metrics every 50 ms: failures, worst latency, peak KV blocks."""

    def __init__(self, base):
        super().__init__(daemon=True)
        self.base, self.stop = base, threading.Event()
        self.scrapes, self.failures, self.worst, self.peak_blocks = 0, [], 0.0, 0.0
        self.session = requests.Session()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                r = self.session.get(f"{self.base}/metrics", timeout=5)
                if r.status_code != 200:
                    self.failures.append(r.status_code)
                else:
                    self.peak_blocks = max(self.peak_blocks,
                                           metric(r.text, "tealight:kv_cache_blocks_used") or 0)
            except requests.RequestException as e:
                self.failures.append(str(e))
            self.worst = max(self.worst, time.monotonic() - t)
            self.scrapes += 1
            self.stop.wait(0.05)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = collections.Counter()
        self.problems = []

    def add(self, key, problem=None):
        with self.lock:
            self.count[key] += 1
            if problem and len(self.problems) < 200:
                self.problems.append(problem)


class Client:
    def __init__(self, base, rng, stats, prompt_tokens):
        self.base, self.rng, self.stats = base, rng, stats
        self.session = requests.Session()
        self.prompt_tokens = prompt_tokens  # cache: request key -> /tokenize count

    def tokens_of(self, key, payload):
        if key not in self.prompt_tokens:
            r = self.session.post(f"{self.base}/tokenize", json=payload, timeout=60)
            r.raise_for_status()
            self.prompt_tokens[key] = r.json()["count"]
        return self.prompt_tokens[key]

    def one(self):
        rng = self.rng
        chat = rng.random() < 0.7
        n = rng.choice([1, 1, 1, 2, 3])
        max_tokens = rng.choice([4, 16, 32, 64, 128])
        body = {"max_tokens": max_tokens, "n": n, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": rng.choice([0, 0.7, 1.0])}
        if rng.random() < 0.5:
            body["seed"] = rng.randrange(1 << 31)
        if rng.random() < 0.3:
            body["stop"] = rng.sample(["\n", "the", ".", "ing", "\n\n", "!"], rng.randrange(1, 3))
        if rng.random() < 0.3:
            body["ignore_eos"] = True
        want_logprobs = rng.random() < 0.75
        guided = tools = False
        topic = rng.choice(TOPICS)
        if chat:
            messages = [{"role": "user", "content": f"Tell me about {topic}."}]
            body["messages"] = messages
            kind = rng.random()
            if kind < 0.15:
                guided = True
                body["response_format"] = GUIDED
            elif kind < 0.3:
                tools = True
                body["tools"] = [WEATHER_TOOL]
                body["tool_choice"] = rng.choice(["auto", "required"])
            if want_logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = rng.randrange(0, 4)
            tok = {"messages": messages}
            if tools:
                tok["tools"] = [WEATHER_TOOL]
            prompt_tokens = self.tokens_of(("chat", topic, tools), tok)
            url = f"{self.base}/v1/chat/completions"
        else:
            prompt = f"Once upon a time, {topic}"
            body["prompt"] = prompt
            if want_logprobs:
                body["logprobs"] = rng.randrange(0, 4)
            prompt_tokens = self.tokens_of(("text", topic), {"prompt": prompt})
            url = f"{self.base}/v1/completions"
        abandon_after = rng.randrange(1, 6) if rng.random() < 0.25 else None
        self.stream(url, body, chat, n, prompt_tokens, want_logprobs, guided, abandon_after)

    def stream(self, url, body, chat, n, prompt_tokens, logprobs, guided, abandon_after):
        label = f"{'chat' if chat else 'cmpl'} {json.dumps(body)[:300]}"
        try:
            r = self.session.post(url, json=body, stream=True, timeout=600)
        except requests.RequestException as e:
            return self.stats.add("transport", f"{label}: {e}")
        if r.status_code != 200:
            r.close()
            return self.stats.add(f"status {r.status_code}", f"{label}: {r.status_code} {r.text[:200]}")
        finish = {}
        tokens = collections.Counter()
        text = collections.defaultdict(str)
        usage, done, chunks = None, False, 0
        try:
            for line in r.iter_lines():
                if not line or line.startswith(b":"):
                    continue
                data = line[len(b"data: "):]
                if data == b"[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    r.close()
                    return self.stats.add("error event", f"{label}: {event}")
                chunks += 1
                for choice in event.get("choices", []):
                    i = choice["index"]
                    if chat:
                        text[i] += choice["delta"].get("content") or ""
                        lp = choice.get("logprobs")
                        tokens[i] += len(lp["content"]) if lp else 0
                    else:
                        text[i] += choice.get("text") or ""
                        lp = choice.get("logprobs")
                        tokens[i] += len(lp["tokens"]) if lp else 0
                    if choice.get("finish_reason"):
                        finish[i] = choice["finish_reason"]
                if event.get("usage"):
                    usage = event["usage"]
                if abandon_after is not None and chunks >= abandon_after:
                    r.close()
                    return self.stats.add("abandoned")
        except (requests.RequestException, ValueError) as e:
            r.close()
            return self.stats.add("broken stream", f"{label}: {e}")
        r.close()
        problems = []
        if not done:
            problems.append("no [DONE]")
        if sorted(finish) != list(range(n)):
            problems.append(f"finish reasons {finish} for n={n}")
        if not usage:
            problems.append("no usage")
        else:
            if usage["prompt_tokens"] != prompt_tokens * (1 if chat else 1):
                problems.append(f"prompt_tokens {usage['prompt_tokens']} != /tokenize {prompt_tokens}")
            if usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
                problems.append("total_tokens is not the sum")
            want = None
            if logprobs:
                want = sum(tokens.values())
            elif body.get("ignore_eos") and "stop" not in body and not guided:
                want = body["max_tokens"] * n
            if want is not None and usage["completion_tokens"] != want:
                problems.append(f"completion_tokens {usage['completion_tokens']} != streamed {want}")
            if usage["completion_tokens"] > body["max_tokens"] * n:
                problems.append("more tokens than max_tokens")
        if guided:
            for i, reason in finish.items():
                if reason == "stop":
                    try:
                        json.loads(text[i])
                    except ValueError:
                        problems.append(f"guided output is not JSON: {text[i][:100]!r}")
        self.stats.add("kept" if not problems else "bad", f"{label}: {problems}" if problems else None)


def load(base, seconds, concurrency, seed, stats):
    deadline = time.monotonic() + seconds
    prompt_tokens = {}

    def worker(i):
        client = Client(base, random.Random(seed * 1000 + i), stats, prompt_tokens)
        while time.monotonic() < deadline:
            client.one()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def wait_idle(base, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = requests.get(f"{base}/metrics", timeout=5).text
        values = [metric(text, f"tealight:{m}") for m in
                  ("num_requests_running", "num_requests_waiting", "kv_cache_blocks_used")]
        if values == [0, 0, 0]:
            return True
        time.sleep(0.2)
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default="target/debug/tealight")
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--warmup", type=float, default=60)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--rss-tolerance", type=float, default=0.05,
                   help="allowed relative RSS change (short runs have not settled: use more)")
    args = p.parse_args()
    port = serve.free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as work:
        log = open(Path(work) / "server.log", "w")
        flags = ["--max-model-len", "2048", "--kv-cache-memory", "256MiB", "--max-num-seqs", "256",
                 "--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--disable-log-requests"]
        server = serve.start(args.binary, port, flags, log)
        try:
            load(base, args.warmup, args.concurrency, args.seed + 1, Stats())
            idle_after_warmup = wait_idle(base)
            rss_before = rss_bytes(server.pid)
            scraper = Scraper(base)
            scraper.start()
            stats = Stats()
            started = time.monotonic()
            load(base, args.duration, args.concurrency, args.seed, stats)
            elapsed = time.monotonic() - started
            idle = wait_idle(base)
            scraper.stop.set()
            scraper.join()
            rss_after = rss_bytes(server.pid)
            alive = server.poll() is None
        finally:
            serve.stop(server)
            log.close()
    drift = (rss_after - rss_before) / rss_before
    c = stats.count
    streams = sum(c.values())
    print(f"soak: {args.concurrency} concurrent streams for {elapsed:.0f} s: {streams} streams, "
          f"{c['kept']} kept and checked, {c['abandoned']} abandoned, {c['bad']} bad, "
          f"other {dict((k, v) for k, v in c.items() if k not in ('kept', 'abandoned', 'bad'))}")
    print(f"/metrics: {scraper.scrapes} scrapes, worst {scraper.worst * 1000:.0f} ms, "
          f"{len(scraper.failures)} failures; peak KV blocks {scraper.peak_blocks:.0f}")
    print(f"idle after: KV blocks 0, nothing running or waiting: {idle} (after warm-up: {idle_after_warmup})")
    print(f"RSS: {rss_before / 2**20:.1f} MiB before, {rss_after / 2**20:.1f} MiB after ({drift * 100:+.2f} %)")
    ok = (alive and idle and idle_after_warmup and c["bad"] == 0 and c["kept"] > 0
          and set(c) <= {"kept", "abandoned"} and not scraper.failures and abs(drift) <= args.rss_tolerance)
    for line in stats.problems[:30]:
        print("problem:", line)
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
