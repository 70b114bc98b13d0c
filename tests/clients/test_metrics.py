"""/metrics as load-aware routers read it: the queue, running and KV-cache gauges move with the
load (each one series with a # TYPE), the names the manifests in deploy/ give the endpoint
picker and the autoscalers exist, `--metrics-compat vllm` adds vLLM's names, and promtool
accepts the exposition."""

import os
import re
import shutil
import subprocess
import threading
import time

import pytest
import requests
import yaml

from conftest import BINARY, MODEL, ROOT
from replicas import start_replica  # on the path through conftest

LOG_DIR = ROOT / "target" / "metrics-tests"
MAX_NUM_SEQS = 2
PICKER_GAUGES = ["num_requests_waiting", "num_requests_running", "kv_cache_usage_perc"]


@pytest.fixture(scope="module")
def metrics_server():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    replica = start_replica(LOG_DIR, [
        "--kv-cache-memory", "64MiB", "--max-num-seqs", str(MAX_NUM_SEQS),
        "--metrics-compat", "vllm"], "metrics", threads=1, binary=BINARY)
    yield replica.url
    replica.stop()


def parse(text: str):
    """(types: name → TYPE, samples: list of (name, labels, value)) of a Prometheus text page."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)", line)
            assert m, f"not a sample line: {line!r}"
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def family(name: str, types: dict) -> str | None:
    """The family a sample belongs to (histogram samples carry a suffix)."""
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and types.get(base) == "histogram":
            return base
    return None


def gauges(url: str) -> tuple[dict, str]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    types, samples = parse(text)
    values = {}
    for prefix in ("tealight:", "vllm:"):
        for g in PICKER_GAUGES:
            series = [s for s in samples if s[0] == prefix + g]
            assert len(series) == 1, f"{prefix}{g}: {series}"
            assert types[prefix + g] == "gauge"
            values[prefix + g] = series[0][2]
    return values, text


def generate(url: str, n: int, max_tokens: int) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Tell story {n}"}],
            "max_tokens": max_tokens, "ignore_eos": True}
    r = requests.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text


def test_picker_gauges_follow_the_load(metrics_server):
    idle, _ = gauges(metrics_server)
    assert idle == {k: 0.0 for k in idle}, idle
    threads = [threading.Thread(target=generate, args=(metrics_server, i, 300)) for i in range(6)]
    for t in threads:
        t.start()
    seen = []
    while any(t.is_alive() for t in threads):
        values, _ = gauges(metrics_server)
        # The vLLM names are the same series under another name.
        for g in PICKER_GAUGES:
            assert values[f"vllm:{g}"] == values[f"tealight:{g}"], values
        seen.append(values)
        time.sleep(0.02)
    for t in threads:
        t.join()
    running = max(v["tealight:num_requests_running"] for v in seen)
    waiting = max(v["tealight:num_requests_waiting"] for v in seen)
    usage = max(v["tealight:kv_cache_usage_perc"] for v in seen)
    assert running == MAX_NUM_SEQS, seen
    assert waiting >= 6 - MAX_NUM_SEQS - 1, seen
    assert 0 < usage < 1, seen
    assert all(v["tealight:num_requests_running"] <= MAX_NUM_SEQS for v in seen)
    # Queued requests drain as running ones finish.
    assert any(v["tealight:num_requests_waiting"] < waiting for v in seen
               if v["tealight:num_requests_running"] > 0)
    deadline = time.time() + 30
    while (after := gauges(metrics_server)[0]) != {k: 0.0 for k in after}:
        assert time.time() < deadline, after
        time.sleep(0.05)


def test_every_sample_has_a_type_and_config_info_is_one_series(metrics_server):
    generate(metrics_server, 99, 4)
    types, samples = parse(requests.get(f"{metrics_server}/metrics", timeout=5).text)
    for name, _, _ in samples:
        assert family(name, types), f"{name} has no # TYPE"
    for name in ("tealight:cache_config_info", "vllm:cache_config_info"):
        (info,) = [s for s in samples if s[0] == name]
        # --kv-cache-memory 64MiB at 512 B per token (tiny model, float16 KV: the CPU default
        # for generation) in 16-token blocks.
        assert info[1] == {"block_size": "16", "num_gpu_blocks": "8192"}, info
        assert info[2] == 1
    vllm = {s[0] for s in samples if s[0].startswith("vllm:")}
    assert {"vllm:prompt_tokens_total", "vllm:generation_tokens_total",
            "vllm:gpu_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
            "vllm:request_success_total"} <= vllm
    for s in samples:
        if s[0].startswith("vllm:") and s[0] != "vllm:cache_config_info":
            assert s[1].get("model_name") == MODEL, s


def test_names_in_the_manifests_exist(metrics_server):
    """The endpoint picker's flags and the autoscalers' queries name real series."""
    types, samples = parse(requests.get(f"{metrics_server}/metrics", timeout=5).text)
    names = {s[0] for s in samples}
    docs = list(yaml.safe_load_all((ROOT / "deploy/inference-gateway/epp.yaml").read_text()))
    (epp,) = [d for d in docs if d["kind"] == "Deployment"]
    args = epp["spec"]["template"]["spec"]["containers"][0]["args"]
    for flag in ("--total-queued-requests-metric", "--total-running-requests-metric",
                 "--kv-cache-usage-percentage-metric", "--cache-info-metric"):
        metric = args[args.index(flag) + 1]
        assert metric in names and types[metric] == "gauge", (flag, metric)
    keda = yaml.safe_load((ROOT / "deploy/autoscaling/keda/scaledobject.yaml").read_text())
    query = keda["spec"]["triggers"][0]["metadata"]["query"]
    (queried,) = re.findall(r"tealight:[a-z_]+", query)
    assert queried == "tealight:num_requests_waiting" and queried in names
    hpa = yaml.safe_load((ROOT / "deploy/autoscaling/hpa/hpa.yaml").read_text())
    adapted = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert adapted.replace("tealight_", "tealight:", 1) in names


def test_promtool_accepts_the_exposition(metrics_server):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing (scripts/test.sh installs Debian's prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    generate(metrics_server, 98, 4)
    text = requests.get(f"{metrics_server}/metrics", timeout=5).text
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60, check=False)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    # Colons are reserved for recording rules by convention, but vLLM's names (which routers
    # and dashboards expect) have them; every other lint must pass.
    other = [p for p in problems if "metric names should not contain ':'" not in p]
    assert not other, "\n".join(problems)
