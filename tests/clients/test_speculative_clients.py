"""Speculative decoding seen by clients: a server with `--speculative-config` answers the
OpenAI SDK (strict models) exactly as one without it — greedy and seeded chat completions,
streamed and not, completions with logprobs — while its /metrics (tealight's names and, with
`--metrics-compat vllm`, vLLM's) count accepted draft tokens and `tealight bench` reports them."""

import json
import subprocess

import openai
import pytest
import requests

from conftest import API_KEY, BINARY, MODEL, ROOT
from replicas import start_replica  # on the path through conftest

LOG_DIR = ROOT / "target" / "speculative-tests"
FLAGS = ["--api-key", API_KEY, "--kv-cache-memory", "64MiB", "--metrics-compat", "vllm"]
SUFFIX = json.dumps({"method": "suffix", "num_speculative_tokens": 6})
REPEATING = ("Repeat after me, five times: the cat sat on the mat, the cat sat on the mat, "
             "the cat sat on the mat")


@pytest.fixture(scope="module")
def servers():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    plain = start_replica(LOG_DIR, FLAGS, "plain", threads=1, binary=BINARY)
    fast = start_replica(LOG_DIR, FLAGS + ["--speculative-config", SUFFIX], "suffix",
                         threads=1, binary=BINARY)
    yield plain.url, fast.url
    plain.stop()
    fast.stop()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)


def counter(url: str, name: str) -> float:
    page = requests.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
               if line.split("{")[0].split(" ")[0] == name)


def chat(url: str, stream: bool, **extra):
    messages = [{"role": "user", "content": REPEATING}]
    args = dict(model=MODEL, messages=messages, max_tokens=48, **extra)
    if not stream:
        r = client(url).chat.completions.create(**args)
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens
    text, finish, usage = "", None, None
    for chunk in client(url).chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **args):
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish, usage


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=0.7, seed=11)])
def test_chat_outputs_are_those_without_speculation(servers, stream, sampling):
    plain, fast = servers
    want = chat(plain, stream, **sampling)
    got = chat(fast, stream, **sampling)
    assert got == want
    assert want[2] == 48 or want[1] == "stop"


def test_completion_logprobs_are_the_targets(servers):
    plain, fast = servers
    args = dict(model=MODEL, prompt=REPEATING, max_tokens=32, temperature=0, logprobs=3)
    want = client(plain).completions.create(**args).choices[0]
    got = client(fast).completions.create(**args).choices[0]
    assert got.text == want.text
    assert got.logprobs.tokens == want.logprobs.tokens
    for a, b in zip(got.logprobs.token_logprobs, want.logprobs.token_logprobs):
        assert abs(a - b) < 1e-3


def test_metrics_count_accepted_drafts_under_both_names(servers):
    plain, fast = servers
    chat(fast, False, temperature=0)
    accepted = counter(fast, "tealight:spec_decode_num_accepted_tokens_total")
    drafted = counter(fast, "tealight:spec_decode_num_draft_tokens_total")
    assert 0 < accepted <= drafted
    assert counter(fast, "vllm:spec_decode_num_accepted_tokens_total") == accepted
    per_position = counter(fast, "tealight:spec_decode_num_accepted_tokens_per_pos_total")
    assert per_position == accepted
    assert counter(plain, "tealight:spec_decode_num_drafts_total") == 0


def test_an_eagle3_head_serves_the_same_chat(servers):
    """`--speculative-config` with an EAGLE-3 head in the published layout (the tiny model's,
    tests/fixtures/eagle3-tiny): the SDK's chats, streamed and not, are those without it."""
    plain, _ = servers
    spec = json.dumps({"method": "eagle3", "model": str(ROOT / "tests" / "fixtures" / "eagle3-tiny"),
                       "num_speculative_tokens": 3})
    eagle = start_replica(LOG_DIR, FLAGS + ["--speculative-config", spec], "eagle3", threads=1,
                          binary=BINARY)
    try:
        for stream in (False, True):
            assert chat(eagle.url, stream, temperature=0) == chat(plain, stream, temperature=0)
        assert chat(eagle.url, False, temperature=0.7, seed=5) == chat(plain, False, temperature=0.7,
                                                                       seed=5)
    finally:
        eagle.stop()


def test_bench_reports_the_acceptance(servers, tmp_path):
    """The bench reports exactly the drafts the server counted while it ran: the engine counts a
    step's drafts before any of its tokens reach a client, so the bench's reading of /metrics
    after its last response holds them all. Whether the server drafts at all in a 48-step
    window is its gate's call on measured step times, which a loaded machine can tip; when it
    did not, the bench must say nothing rather than a rate of 0/0."""
    _, fast = servers
    result = tmp_path / "bench.json"
    names = {"spec_decode_num_drafts": "num_drafts", "spec_decode_draft_tokens": "num_draft_tokens",
             "spec_decode_accepted_tokens": "num_accepted_tokens"}
    before = {k: counter(fast, f"tealight:spec_decode_{v}_total") for k, v in names.items()}
    subprocess.run([str(BINARY), "bench", "--base-url", f"{fast}/v1", "--api-key", API_KEY,
                    "--tokenizer", str(ROOT / "models" / "qwen3-tiny"), "--input-len", "32",
                    "--output-len", "24", "--num-prompts", "2", "--max-concurrency", "1",
                    "--num-warmups", "0", "--no-progress", "--result-file", str(result)],
                   check=True, capture_output=True, timeout=300)
    r = json.loads(result.read_text())
    counted = {k: counter(fast, f"tealight:spec_decode_{v}_total") - before[k]
               for k, v in names.items()}
    if counted["spec_decode_num_drafts"] == 0:
        assert "spec_decode_num_drafts" not in r, r
        return
    assert {k: r[k] for k in names} == counted
    assert 0 <= r["spec_decode_acceptance_rate"] <= 100
    assert r["spec_decode_acceptance_length"] >= 1
