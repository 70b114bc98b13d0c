"""What every attack shares: the server it runs against, a `/health` prober, resident memory,
and the registry the runner reads.

An attack is a function `fn(server, short)`; `server` is a [`Server`], `short` is True in the
test suite's bounded run (smaller sizes, the same assertions). It raises AssertionError (with a
message saying what was expected) when the server misbehaves.
"""

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import server as serve  # noqa: E402

REGISTRY = []


@dataclasses.dataclass
class Attack:
    name: str
    fn: object
    flags: tuple = ()          # extra `serve` flags; attacks with equal flags share one server
    own_server: bool = False   # a fresh server of its own (it kills, drains or exhausts it)
    budget_s: float = 60.0     # the attack's time bound, start-up excluded
    max_health_s: float = 1.0  # worst /health latency allowed while it runs
    max_rss_growth_mib: float = 256.0
    env: dict = dataclasses.field(default_factory=dict)
    preexec: object = None     # e.g. to lower RLIMIT_NOFILE for the server process


def attack(name, **kw):
    """Registers `fn` as an attack named `name` (see [`Attack`] for the keywords)."""
    def register(fn):
        REGISTRY.append(Attack(name=name, fn=fn, **kw))
        return fn
    return register


class Server:
    """`tealight serve` on the embedded model, on 127.0.0.1 and a free port. A server that
    exits or never turns healthy at start-up raises RuntimeError."""

    def __init__(self, binary, flags=(), env=None, preexec=None, log=None):
        self.binary, self.flags, self.log = binary, list(flags), log
        self.port = serve.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        flags = ["--kv-cache-memory", "512MiB", "--disable-log-requests", *self.flags]
        try:
            self.proc = serve.start(binary, self.port, flags, log, timeout=180, env=env,
                                    preexec=preexec)
        except SystemExit as e:
            raise RuntimeError(str(e)) from None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def rss_mib(self):
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def post(self, path, body, timeout=60, **kw):
        return requests.post(f"{self.url}{path}", json=body, timeout=timeout, **kw)

    def get(self, path, timeout=60, **kw):
        return requests.get(f"{self.url}{path}", timeout=timeout, **kw)

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class HealthProbe(threading.Thread):
    """GET /health every 100 ms (a fresh connection each time, 5 s timeout); keeps the worst
    latency (a failure counts as the timeout) and the peak RSS seen."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.halt = server, threading.Event()
        self.worst, self.failures, self.probes, self.peak_rss = 0.0, [], 0, server.rss_mib()

    def run(self):
        while not self.halt.is_set():
            t = time.monotonic()
            try:
                r = requests.get(f"{self.server.url}/health", timeout=5)
                if r.status_code != 200:
                    self.failures.append(r.status_code)
            except requests.RequestException as e:
                self.failures.append(type(e).__name__)
            self.worst = max(self.worst, time.monotonic() - t)
            self.peak_rss = max(self.peak_rss, self.server.rss_mib())
            self.probes += 1
            self.halt.wait(0.1)

    def finish(self):
        self.halt.set()
        self.join(timeout=10)


def openai_error(response, status, code=None, mentions=None):
    """Asserts an OpenAI-shaped error: the status, `{"error": {"message", "type", "param",
    "code"}}`, and optionally the code and a word the message must contain (e.g. the flag)."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:300]}")
    body = response.json()
    error = body.get("error")
    assert isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error), body
    if code is not None:
        assert error["code"] == code, f"expected code {code!r}, got {error['code']!r}"
    if mentions is not None:
        assert mentions in error["message"], f"{mentions!r} not in {error['message']!r}"
    return error


def dump(results, path):
    Path(path).write_text(json.dumps(results, indent=2))
