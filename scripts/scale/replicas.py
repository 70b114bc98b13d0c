#!/usr/bin/env python3
"""N `tealight serve` replicas on this machine behind vllm-router (PyPI `vllm-router`).

    python scripts/scale/replicas.py --replicas 2 --policy cache_aware --port 30000

starts the replicas on free ports, waits until each answers /health, starts the router in front
of them, prints the addresses and waits for Ctrl-C (then stops everything). The tests
(tests/clients/test_router.py) and scripts/scale/bench_router.py use the same functions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
MODEL = "Qwen3-4B"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tealight_binary() -> Path:
    """target/release/tealight if built, else the test build's target/debug/tealight."""
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "tealight"
        if path.exists():
            return path
    raise FileNotFoundError("build tealight first (cargo build --release, or cargo test)")


def router_command() -> str:
    """The `vllm-router` launcher installed beside this Python (pip install vllm-router)."""
    local = Path(sys.executable).parent / "vllm-router"
    found = str(local) if local.exists() else shutil.which("vllm-router")
    if not found:
        raise FileNotFoundError("vllm-router is not installed (pip install vllm-router)")
    return found


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited with {proc.returncode}; see {log}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{url}: not healthy after {timeout} s; see {log}")
        time.sleep(0.05)


@dataclass
class Process:
    """A started server: its base URL, process and log file."""

    url: str
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL: the abrupt loss of a replica (a crashed pod, a lost node)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def start_replica(log_dir: Path, flags: list[str] | None = None, name: str = "replica",
                  threads: int | None = None, binary: Path | None = None,
                  max_model_len: int = 4096) -> Process:
    port = free_port()
    args = [
        str(binary or tealight_binary()), "serve",
        "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(max_model_len), "--disable-log-requests",
    ]
    if threads is not None:
        args += ["--threads", str(threads)]
    args += flags or []
    log = log_dir / f"{name}-{port}.log"
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, 120, log)
    return Process(url, proc, log)


def start_router(workers: list[str], policy: str, log_dir: Path,
                 extra: list[str] | None = None, port: int | None = None) -> Process:
    port = port or free_port()
    args = [
        router_command(), "--host", "127.0.0.1", "--port", str(port),
        "--worker-urls", *workers, "--policy", policy,
        # Notice a dead replica within about a second.
        "--health-check-interval-secs", "1", "--health-failure-threshold", "1",
        "--health-check-timeout-secs", "1", "--log-level", "warning",
        "--prometheus-port", str(free_port()),
    ] + (extra or [])
    log = log_dir / f"router-{policy}-{port}.log"
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, 60, log)
    return Process(url, proc, log)


def scrape(url: str) -> dict[str, float]:
    """A replica's unlabelled metrics (name → value)."""
    values = {}
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("#") or "{" in line or not line.strip():
            continue
        name, value = line.split()
        values[name] = float(value)
    return values


@dataclass
class PrefixCounters:
    """Prompt tokens looked up in / served by the prefix cache, summed over replicas."""

    queries: float = 0.0
    hits: float = 0.0
    per_replica: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def read(cls, replicas: list[Process]) -> "PrefixCounters":
        counters = cls()
        for r in replicas:
            m = scrape(r.url)
            q, h = m["tealight:prefix_cache_queries_total"], m["tealight:prefix_cache_hits_total"]
            counters.queries += q
            counters.hits += h
            counters.per_replica.append((q, h))
        return counters

    def since(self, before: "PrefixCounters") -> "PrefixCounters":
        return PrefixCounters(
            self.queries - before.queries,
            self.hits - before.hits,
            [(q - q0, h - h0) for (q, h), (q0, h0) in zip(self.per_replica, before.per_replica)],
        )

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--policy", default="cache_aware")
    parser.add_argument("--port", type=int, default=30000, help="the router's port")
    parser.add_argument("--threads", type=int, help="--threads of each replica")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "target" / "scale-out")
    parser.add_argument("serve_flags", nargs="*", help="extra `tealight serve` flags (after --)")
    args = parser.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    replicas = [start_replica(args.log_dir, args.serve_flags, f"replica{i}", args.threads)
                for i in range(args.replicas)]
    router = None
    try:
        router = start_router([r.url for r in replicas], args.policy, args.log_dir,
                              port=args.port)
        for r in replicas:
            print(f"replica  {r.url}  (log {r.log})")
        print(f"router   {router.url}/v1  policy {args.policy}  (log {router.log})")
        print("Ctrl-C stops everything.")
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for p in ([router] if router else []) + replicas:
            p.stop()


if __name__ == "__main__":
    main()
