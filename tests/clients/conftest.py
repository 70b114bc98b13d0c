"""Starts `tealight serve` on the embedded tiny model for the client tests."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "debug" / "tealight"
API_KEY = "111"
MODEL = "Qwen3-4B"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server():
    """Base URL (`http://127.0.0.1:<port>/v1`) of a server started like a vLLM user would."""
    port = _free_port()
    args = [
        str(BINARY), "serve",
        "--served-model-name", MODEL,
        "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY,
        "--max-model-len", "4096", "--kv-cache-memory", "64MiB",
        "--reasoning-parser", "qwen3",
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        "--disable-log-requests",
    ]
    log = open(ROOT / "target" / "client-tests-server.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see target/client-tests-server.log")
        try:
            if requests.get(f"{root}/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("server did not become healthy")
        time.sleep(0.05)
    yield f"{root}/v1"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def reference():
    """The HF transformers reference case: system + user in Chinese, 40 greedy tokens."""
    data = json.loads((ROOT / "tests" / "fixtures" / "reference.json").read_text())
    model = next(m for m in data["models"] if m["shape"] == "tiny")
    return next(c for c in model["cases"] if c["name"] == "chinese_system_user")
