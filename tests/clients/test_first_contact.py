"""scripts/gpu/first-contact.sh rehearsed on the CPU build (`--smoke`): every stage runs on the
embedded tiny model except the ones that need torch, which say so; a stage that runs and fails is
reported FAIL, never SKIP; a server on the wrong device, a failed setup and a server that never
comes up are reported at once; the budgets fit the device run."""

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


def smoke(tmp_path, binary=BINARY, stages=None, **extra_env):
    env = dict(os.environ, OUT=str(tmp_path / "out"), TEALIGHT_GPU_WORK=str(tmp_path / "work"),
               TEALIGHT_BIN=str(binary), PYTHON=sys.executable, **extra_env)
    if stages:
        env["STAGES"] = stages
    proc = subprocess.run(["bash", str(SCRIPT), "--smoke"], env=env, capture_output=True, text=True,
                          timeout=240)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    return proc, summary, {s["stage"]: s for s in summary["stages"]}


def fake_binary(tmp_path, script):
    """A tealight that runs `script` (sh) first and otherwise is the real binary."""
    fake = tmp_path / "tealight"
    fake.write_text(f'#!/bin/sh\n{script}\nexec "{BINARY}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def test_smoke_runs_every_stage_it_can(tmp_path):
    proc, summary, stages = smoke(tmp_path)
    log = proc.stdout + proc.stderr
    assert summary["mode"] == "smoke" and summary["device"] == "cpu"
    assert list(stages) == ["setup", "a", "b", "c", "d", "e", "f", "g", "h", "i"], log
    for stage in ["setup", *"acdefghi"]:
        assert stages[stage]["status"] == "PASS", (stages[stage], log[-3000:])
    # The pre-flight ran every check on the device (here the CPU) during the setup.
    assert "pre-flight all ok" in stages["setup"]["detail"], stages["setup"]
    assert summary["verdict"] == ("PASS" if has_torch() else "INCOMPLETE"), summary["verdict"]
    assert summary["other_stages"] == {"f": "PASS", "g": "PASS", "h": "PASS", "i": "PASS"}
    assert "fp8 KV cache on cpu" in stages["i"]["detail"], stages["i"]
    assert "MoE logits" in stages["h"]["detail"] and "served on cpu" in stages["h"]["detail"], stages["h"]
    assert "ngram: c=1" in stages["g"]["detail"], stages["g"]
    if has_torch():
        assert stages["b"]["status"] == "PASS", (stages["b"], log[-3000:])
    else:
        assert stages["b"]["status"] == "SKIP" and "torch" in stages["b"]["detail"]
    assert proc.returncode == 0, log[-3000:]

    a = stages["a"]["metrics"]
    assert a["ready_s"] >= 0 and a["chat"]["completion_tokens"] >= 1
    assert a["stream"]["finish_reason"] in ("stop", "length") and a["problems"] == []
    # The server's own report of its device, and the start-up log line.
    assert a["served_device"]["device"] == "cpu" and a["served_device"]["ok"] is True, a
    assert "device: cpu" in (tmp_path / "out" / "serve-a.log").read_text()
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
    # A binary whose kernel and stream checks fail: those stages run and must fail.
    fake = fake_binary(tmp_path, 'case "$2" in kernels|streams) echo "broken" >&2; exit 3;; esac')
    proc, summary, stages = smoke(tmp_path, binary=fake, stages="c e")
    assert stages["c"]["status"] == "FAIL" and stages["e"]["status"] == "FAIL"
    assert set(stages) == {"setup", "c", "e"}
    assert summary["failed"] == 2 and summary["verdict"] == "FAIL"
    assert proc.returncode != 0


def test_a_server_on_another_device_fails_stage_a(tmp_path):
    # What a GPU run sees when `--device auto` falls back to the CPU: the server answers and
    # generates, but its own report names the CPU. Here the CPU server is held to `cuda`.
    proc, summary, stages = smoke(tmp_path, stages="a", WANT_DEVICE="cuda")
    log = proc.stdout + proc.stderr
    assert stages["a"]["status"] == "FAIL", (stages["a"], log[-3000:])
    assert "runs on cpu, not cuda" in stages["a"]["detail"], stages["a"]
    assert stages["a"]["metrics"]["served_device"]["device"] == "cpu"
    assert proc.returncode != 0


def test_a_failed_setup_is_a_fail_row_and_a_non_zero_exit(tmp_path):
    # A binary that does not start (as one linked against missing CUDA libraries would not).
    fake = fake_binary(tmp_path, 'if [ "$1" = --version ]; then echo "cannot open libcublas.so.13" >&2; exit 127; fi')
    proc, summary, stages = smoke(tmp_path, binary=fake)
    log = proc.stdout + proc.stderr
    assert stages["setup"]["status"] == "FAIL", (stages, log[-3000:])
    assert "--version exited 127" in stages["setup"]["detail"], stages["setup"]
    assert all(stages[s]["status"] == "SKIP" for s in "abcdef"), stages
    assert summary["verdict"] == "FAIL"
    assert proc.returncode != 0
    # A pre-flight that fails is a failed setup too, reported with the failing check.
    fake = fake_binary(tmp_path, 'if [ "$2" = preflight ]; then echo "preflight matmul-bf16 failed: CUDA_ERROR_NO_DEVICE"; exit 1; fi')
    proc, summary, stages = smoke(tmp_path, binary=fake, stages="a")
    assert stages["setup"]["status"] == "FAIL" and "matmul-bf16" in stages["setup"]["detail"], stages
    assert stages["a"]["status"] == "SKIP" and proc.returncode != 0


def test_an_unreachable_server_fails_a_and_skips_d_at_once(tmp_path):
    fake = fake_binary(tmp_path, 'if [ "$1" = serve ]; then echo "CUDA_ERROR_OUT_OF_MEMORY" >&2; exit 1; fi')
    proc, summary, stages = smoke(tmp_path, binary=fake, stages="a d")
    log = proc.stdout + proc.stderr
    assert stages["a"]["status"] == "FAIL", (stages["a"], log[-3000:])
    assert stages["d"]["status"] == "SKIP" and stages["d"]["seconds"] == 0, stages["d"]
    assert "never answered /health" in stages["d"]["detail"]
    assert stages["a"]["seconds"] < 20, stages["a"]  # the wait ends when the server exits
    assert proc.returncode != 0


def test_the_budgets_fit_the_device_run(tmp_path):
    # Setup as measured here (binary checks, the pre-flight) within its budget, and setup + the
    # a-e budgets + the reserve within 8 minutes: the one run leaves the rest of the machine's
    # 15 minutes for its start-up and the follow-up.
    proc, summary, stages = smoke(tmp_path, stages="a")
    assert stages["setup"]["status"] == "PASS", (stages, proc.stdout[-2000:])
    measured_setup = stages["setup"]["seconds"]
    assert measured_setup <= summary["setup_budget_s"], summary
    budgets = summary["budgets_s"]
    core = sum(budgets[s] for s in "abcde")
    assert summary["setup_budget_s"] + core + summary["reserve_s"] <= 480, summary
    assert measured_setup + core + summary["reserve_s"] <= 480
    assert summary["deadline_s"] <= 480
    # Stage a's measured start-up on the CPU fits its budget many times over.
    assert stages["a"]["metrics"]["ready_s"] < budgets["a"] / 4, stages["a"]
    # Stage f runs only with its real need left, and is reported beside the verdict.
    script = SCRIPT.read_text()
    assert "[f]=100" in script


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
