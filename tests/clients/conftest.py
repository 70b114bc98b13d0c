"""Starts `tealight serve` on the embedded tiny model for the client tests."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "scale"))
import replicas  # noqa: E402  (the same start-up as the router tests)

BINARY = ROOT / "target" / "debug" / "tealight"
API_KEY = "111"
MODEL = replicas.MODEL


@pytest.fixture(scope="session")
def server():
    """Base URL (`http://127.0.0.1:<port>/v1`) of a server started like a vLLM user would."""
    replica = replicas.start_replica(ROOT / "target", [
        "--api-key", API_KEY, "--kv-cache-memory", "64MiB",
        "--reasoning-parser", "qwen3",
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    ], "client-tests-server", binary=BINARY)
    yield f"{replica.url}/v1"
    replica.stop()


@pytest.fixture(scope="session")
def reference():
    """The HF transformers reference case: system + user in Chinese, 40 greedy tokens."""
    data = json.loads((ROOT / "tests" / "fixtures" / "reference.json").read_text())
    model = next(m for m in data["models"] if m["shape"] == "tiny")
    return next(c for c in model["cases"] if c["name"] == "chinese_system_user")
