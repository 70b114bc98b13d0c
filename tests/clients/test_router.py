"""Two tealight replicas behind a real router (vllm-router from PyPI): answers through the router
are exact, prefix-affine routing beats round robin on the replicas' own prefix-cache counters,
and losing a replica mid-load fails only the requests it held."""

import json
import random
import threading
import time

import pytest
import requests
from openai import OpenAI

from conftest import BINARY, MODEL, ROOT
from replicas import PrefixCounters, scrape, start_replica, start_router  # on the path through conftest

LOG_DIR = ROOT / "target" / "router-tests"
REPLICA_FLAGS = ["--kv-cache-memory", "64MiB", "--seed", "7"]


@pytest.fixture(scope="module")
def pair():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    replicas = [start_replica(LOG_DIR, REPLICA_FLAGS, f"replica{i}", threads=1, binary=BINARY)
                for i in range(2)]
    routers = []

    def route(policy: str):
        router = start_router([r.url for r in replicas], policy, LOG_DIR)
        routers.append(router)
        return router

    yield replicas, route
    for p in routers + replicas:
        p.stop()


def words(rng: random.Random, n: int) -> str:
    vocab = ["river", "stone", "lamp", "orbit", "maple", "copper", "signal", "harbor", "quiet",
             "ember", "vector", "meadow", "canyon", "pixel", "tundra", "saffron", "glacier"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def sessions_workload(seed: int, sessions: int = 7, rounds: int = 3):
    """Each session: its own long system prompt, then a new short question every round. An odd
    session count makes round robin alternate each session between the two replicas."""
    rng = random.Random(seed)
    prompts = [f"Session {seed}-{s}. " + words(rng, 160) for s in range(sessions)]
    for r in range(rounds):
        for s in range(sessions):
            yield f"session-{seed}-{s}", [
                {"role": "system", "content": prompts[s]},
                {"role": "user", "content": f"Question {r}: " + words(rng, 6)},
            ]


def hit_rate_through(router, replicas, seed: int) -> PrefixCounters:
    before = PrefixCounters.read(replicas)
    for user, messages in sessions_workload(seed):
        # The session key consistent_hash reads first. (vllm-router 0.1.17 scans the raw body
        # for a `user` field and stops at the first "user" string, the role, so the body
        # field is no key for chat requests.)
        r = requests.post(f"{router.url}/v1/chat/completions", timeout=120,
                          headers={"X-Session-Id": user},
                          json={"model": MODEL, "messages": messages, "max_tokens": 1})
        assert r.status_code == 200, r.text
    return PrefixCounters.read(replicas).since(before)


def test_answers_through_the_router_are_exact(pair, reference):
    replicas, route = pair
    router = route("cache_aware")
    direct = OpenAI(base_url=f"{replicas[0].url}/v1", api_key="-",
                    _strict_response_validation=True)
    routed = OpenAI(base_url=f"{router.url}/v1", api_key="-", _strict_response_validation=True)
    messages = [{"role": "system", "content": "你是一个小助手"}, {"role": "user", "content": "你好"}]
    expected = requests.post(f"{replicas[0].url}/detokenize",
                             json={"tokens": reference["greedy"]}, timeout=30).json()["prompt"]
    for client in (direct, routed):
        greedy = client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=40,
            extra_body={"ignore_eos": True})
        assert greedy.choices[0].message.content == expected
        assert greedy.choices[0].finish_reason == "length"
        assert greedy.usage.prompt_tokens == len(reference["prompt_ids"])
        assert greedy.usage.completion_tokens == 40
        text, finish = "", None
        for chunk in client.chat.completions.create(
                model=MODEL, messages=messages, temperature=0, max_tokens=40, stream=True,
                extra_body={"ignore_eos": True}):
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        assert (text, finish) == (expected, "length")
    # Seeded sampling and the completions API come back unchanged too.
    body = {"model": MODEL, "prompt": "The sea", "max_tokens": 24, "temperature": 0.9,
            "seed": 1234, "ignore_eos": True}
    via_router = requests.post(f"{router.url}/v1/completions", json=body, timeout=120).json()
    plain = requests.post(f"{replicas[1].url}/v1/completions", json=body, timeout=120).json()
    assert via_router["choices"] == plain["choices"]
    assert via_router["usage"] == plain["usage"]
    # SSE framing survives the proxy: data lines only, closed by [DONE].
    streamed = requests.post(f"{router.url}/v1/completions", json={**body, "stream": True},
                             timeout=120)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    raw = streamed.content.decode("utf-8")  # SSE is UTF-8 whatever the header says
    events = [b for b in raw.split("\n\n") if b]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == \
        plain["choices"][0]["text"]


def test_prefix_affine_routing_beats_round_robin(pair):
    replicas, route = pair
    # Each policy gets sessions of its own, so no run profits from another's cache.
    rates = {policy: hit_rate_through(route(policy), replicas, seed)
             for seed, policy in enumerate(["round_robin", "consistent_hash", "cache_aware"])}
    summary = {p: round(c.hit_rate, 3) for p, c in rates.items()}
    print("prefix-cache hit rate by policy:", summary)
    for policy in ("consistent_hash", "cache_aware"):
        # Round robin sends every session to both replicas (two cold prefills per session);
        # affinity keeps it on one (one cold prefill): 2/3 vs 1/3 of the prefixes hit.
        assert rates[policy].hit_rate > 1.5 * rates["round_robin"].hit_rate, summary
    assert rates["round_robin"].hit_rate > 0, summary
    # Hashing spreads the sessions over both replicas. (cache_aware sends an unseen prefix to
    # the replica with the fewest requests in flight, the first one on a tie, so one request
    # at a time all lands on one replica; under concurrent load it spreads.)
    assert all(q > 0 for q, _ in rates["consistent_hash"].per_replica), rates


def stream_until_done(url: str, seed: int, outcome: dict) -> None:
    """One long streamed generation; records how it ended instead of raising."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Story {seed}"}],
            "max_tokens": 400, "ignore_eos": True, "stream": True, "seed": seed}
    outcome.update(chunks=0, finish=None, done=False, error=None)
    try:
        with requests.post(f"{url}/v1/chat/completions", json=body, stream=True,
                           timeout=(5, 60)) as r:
            outcome["status"] = r.status_code
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                data = line[len(b"data: "):]
                if data == b"[DONE]":
                    outcome["done"] = True
                    continue
                event = json.loads(data)
                if "error" in event:
                    outcome["error"] = event["error"]
                    continue
                outcome["chunks"] += 1
                for choice in event["choices"]:
                    outcome["finish"] = choice.get("finish_reason") or outcome["finish"]
    except requests.RequestException as e:
        outcome["error"] = repr(e)


def test_losing_a_replica_mid_load():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    survivor, victim = (
        start_replica(LOG_DIR, REPLICA_FLAGS, f"kill{i}", threads=1, binary=BINARY)
        for i in range(2))
    router = start_router([survivor.url, victim.url], "round_robin", LOG_DIR)
    try:
        outcomes = [{} for _ in range(6)]
        threads = [threading.Thread(target=stream_until_done, args=(router.url, i, o))
                   for i, o in enumerate(outcomes)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while True:
            # Requests each replica holds (running or queued), until all six are placed.
            held = [scrape(r.url) for r in (survivor, victim)]
            held = [m["tealight:num_requests_running"] + m["tealight:num_requests_waiting"]
                    for m in held]
            if sum(held) == len(outcomes) and min(held) >= 1:
                break
            assert time.time() < deadline, f"load never reached both replicas: {held}"
            time.sleep(0.02)
        on_victim = held[1]
        victim.kill()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a request hung after the replica died"
        finished = [o for o in outcomes if o["finish"] == "length" and o["done"]]
        failed = [o for o in outcomes if o not in finished]
        print(f"killed a replica holding {on_victim:.0f} streams: {len(finished)} finished, "
              f"{len(failed)} failed: {failed}")
        # Exactly the streams the dead replica held fail, and each one visibly: cut short
        # without a finish_reason, or with an error.
        assert len(failed) == on_victim, outcomes
        for o in failed:
            assert o["finish"] is None and (o["error"] or not o["done"]), o
        # New requests go to the survivor; the router keeps answering.
        for i in range(6):
            r = requests.post(f"{router.url}/v1/chat/completions", timeout=60, json={
                "model": MODEL, "messages": [{"role": "user", "content": f"after {i}"}],
                "max_tokens": 4})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["finish_reason"] in ("stop", "length")
        # The router's /health is 503 while any worker is down, naming it; /liveness stays 200
        # (what to probe the router itself with).
        health = requests.get(f"{router.url}/health", timeout=5)
        assert health.status_code == 503 and victim.url in health.text, health.text
        assert survivor.url not in health.text, health.text
        assert requests.get(f"{router.url}/liveness", timeout=5).status_code == 200
    finally:
        for p in (router, survivor, victim):
            p.stop()
