"""scripts/gpu/first-contact.sh rehearsed on the CPU build (`--smoke`): every stage runs on the
embedded tiny model except the ones that need torch, which say so; a stage that runs and fails is
reported FAIL, never SKIP."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import BINARY, ROOT

SCRIPT = ROOT / "scripts" / "gpu" / "first-contact.sh"


def has_torch():
    probe = "import torch, transformers, numpy"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def smoke(tmp_path, binary=BINARY, stages=None):
    env = dict(os.environ, OUT=str(tmp_path / "out"), TEALIGHT_GPU_WORK=str(tmp_path / "work"),
               TEALIGHT_BIN=str(binary), PYTHON=sys.executable)
    if stages:
        env["STAGES"] = stages
    proc = subprocess.run(["bash", str(SCRIPT), "--smoke"], env=env, capture_output=True, text=True,
                          timeout=240)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    return proc, summary, {s["stage"]: s for s in summary["stages"]}


def test_smoke_runs_every_stage_it_can(tmp_path):
    proc, summary, stages = smoke(tmp_path)
    log = proc.stdout + proc.stderr
    assert summary["mode"] == "smoke" and summary["device"] == "cpu"
    assert list(stages) == ["a", "b", "c", "d", "e", "f"], log
    for stage in "acdef":
        assert stages[stage]["status"] == "PASS", (stages[stage], log[-3000:])
    if has_torch():
        assert stages["b"]["status"] == "PASS", (stages["b"], log[-3000:])
    else:
        assert stages["b"]["status"] == "SKIP" and "torch" in stages["b"]["detail"]
    assert proc.returncode == 0, log[-3000:]

    a = stages["a"]["metrics"]
    assert a["ready_s"] >= 0 and a["chat"]["completion_tokens"] >= 1
    assert a["stream"]["finish_reason"] in ("stop", "length") and a["problems"] == []
    bench = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [lv["max_concurrency"] for lv in bench["levels"]] == [1, 4]
    assert all(lv["failed"] == 0 and lv["completed"] == lv["num_prompts"] for lv in bench["levels"])
    assert bench["single_stream_vs_roofline"]["decode_tok_s"] > 0
    # No HBM figure for a CPU: no fraction is made up.
    assert bench["single_stream_vs_roofline"]["fraction"] is None
    f = stages["f"]["metrics"]
    assert f["gguf_type"] == "q8_0" and len(f["comparison"]) == 4, f
    assert f["gguf_decode_c1"].endswith("tok/s"), f
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8, files  # what a device run brings back
    assert {"summary.json", "first-contact.log", "serve-a.log", "serve-d.log", "serve-f.log",
            "bench.json"} <= set(files)


def test_a_stage_that_runs_and_fails_is_a_fail(tmp_path):
    # A binary whose `debug` subcommands fail: the kernels and streams stages run and must fail.
    fake = tmp_path / "tealight"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = debug ]; then echo "broken" >&2; exit 3; fi\nexec "{BINARY}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    proc, summary, stages = smoke(tmp_path, binary=fake, stages="c e")
    assert stages["c"]["status"] == "FAIL" and stages["e"]["status"] == "FAIL"
    assert set(stages) == {"c", "e"}
    assert summary["failed"] == 2
    assert proc.returncode != 0


def test_compare_devices_fails_beyond_the_quantization_noise(tmp_path):
    import numpy as np

    rng = np.random.default_rng(3)
    dense = rng.normal(0, 3, (64, 500)).astype(np.float32)
    cpu = dense + rng.normal(0, 0.2, dense.shape).astype(np.float32)
    paths = {}
    for name, value in {"dense": dense, "cpu": cpu, "close": cpu + 0.05, "far": cpu + 0.5 * rng.normal(
            0, 1, dense.shape).astype(np.float32)}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], value)
    script = ROOT / "scripts" / "gpu" / "compare_devices.py"

    def run(got):
        return subprocess.run([sys.executable, str(script), "--dense", str(paths["dense"]), "--cpu",
                               str(paths["cpu"]), "--got", f"x={paths[got]}"], capture_output=True, text=True)

    close, far = run("close"), run("far")
    assert close.returncode == 0 and "PASS" in close.stdout, close.stdout + close.stderr
    assert far.returncode == 1 and "FAIL" in far.stdout, far.stdout + far.stderr
