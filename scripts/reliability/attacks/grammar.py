"""Structured outputs: schemas that abort the process, fail as 500s, or keep the blocking pool
busy (issue 24, items 1, 2, 6 and 7's grammar part)."""

import threading
import time

import requests

from .harness import attack, openai_error

LIGHT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def wide_schema(n, required=False):
    props = {f"p{i}": {"type": "string", "maxLength": 4} for i in range(n)}
    schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(props)
    return schema


def routes(schema):
    """The four ways a schema reaches the grammar compiler: (path, body, expected param)."""
    user = [{"role": "user", "content": "hi"}]
    return [
        ("/v1/chat/completions",
         {"messages": user, "max_tokens": 4,
          "response_format": {"type": "json_schema",
                              "json_schema": {"name": "x", "schema": schema}}},
         "response_format"),
        ("/v1/responses",
         {"input": "hi", "max_output_tokens": 4,
          "text": {"format": {"type": "json_schema", "name": "x", "schema": schema}}},
         "text.format"),
        ("/v1/messages",
         {"model": "m", "messages": user, "max_tokens": 4,
          "output_config": {"format": {"type": "json_schema", "schema": schema}}},
         None),
        ("/v1/chat/completions",
         {"messages": user, "max_tokens": 4,
          "tools": [{"type": "function",
                     "function": {"name": "f", "parameters": schema}}],
          "tool_choice": {"type": "function", "function": {"name": "f"}}},
         "tools[0].function.parameters"),
    ]


def refused(response, param, mentions):
    """A 400 naming `mentions`: OpenAI's shape with `param`, or Anthropic's for /v1/messages."""
    if param is None:
        assert response.status_code == 400, (
            f"expected 400, got {response.status_code}: {response.text[:300]}")
        message = response.json()["error"]["message"]
        assert mentions in message, f"{mentions!r} not in {message!r}"
        return
    error = openai_error(response, 400, mentions=mentions)
    assert error["param"] == param, f"param {error['param']!r}, expected {param!r}"


@attack("grammar_huge_schema_every_route", own_server=True)
def huge_schema_every_route(server, short):
    """~7,000 properties in one object (about 75 KB) overflowed the compile thread's stack and
    aborted the process; now each route refuses it with a 400 naming the flag."""
    schema = wide_schema(7000)
    chosen = routes(schema)[:2] if short else routes(schema)
    for path, body, param in chosen:
        try:
            r = server.post(path, body, timeout=30)
        except requests.RequestException as e:
            raise AssertionError(f"{path}: no response ({type(e).__name__}); server alive: "
                                 f"{server.alive()}")
        refused(r, param, "--max-schema-properties")
    assert server.alive(), "the server died"


def no_server_error(server, path, body, param, mentions):
    """Non-streamed and streamed: a 400, never a 500, a 200 with an error event, or a failed
    response."""
    r = server.post(path, body, timeout=60)
    if path == "/v1/responses" and r.status_code == 200:
        raise AssertionError(f"responses answered 200 with status "
                             f"{r.json().get('status')!r}: {r.text[:200]}")
    refused(r, param, mentions)
    r = server.post(path, {**body, "stream": True}, timeout=60, stream=True)
    head = r.raw.read(300, decode_content=True) if r.status_code == 200 else b""
    assert r.status_code == 400, (
        f"{path} stream: expected 400 before any event, got {r.status_code}: {head[:200]!r}")
    refused(r, param, mentions)


@attack("grammar_wide_schema_is_a_400")
def wide_schema_is_a_400(server, short):
    """600 optional properties compiled, then the first mask failed on the engine thread: 500s,
    a 200 stream with an error event, a failed response. Now refused up front."""
    for path, body, param in routes(wide_schema(600))[: 1 if short else 3]:
        no_server_error(server, path, body, param, "--max-schema-properties")


@attack("grammar_first_mask_is_a_400", flags=("--max-schema-properties", "10000"))
def first_mask_is_a_400(server, short):
    """With the property bound raised, a schema whose first step exceeds the grammar engine's
    limits is refused at compile time with a 400 that says what to change."""
    for path, body, param in routes(wide_schema(1000))[: 1 if short else 3]:
        no_server_error(server, path, body, param, "mark properties required")


def heavy_schema(objects, props):
    """Many objects of many required properties: within the default bounds, costly to
    compile."""
    inner = wide_schema(props, required=True)
    return {"type": "object",
            "properties": {f"o{i}": inner for i in range(objects)},
            "required": [f"o{i}" for i in range(objects)]}


def timed_light(server, results, stop, path="/v1/chat/completions", body=None):
    while not stop.is_set():
        t = time.monotonic()
        try:
            r = server.post(path, body or LIGHT, timeout=60)
            ok = r.status_code == 200
        except requests.RequestException:
            ok = False
        results.append((time.monotonic() - t, ok))
        stop.wait(0.2)


@attack("grammar_heavy_compiles_leave_light_lane_free", budget_s=90)
def heavy_compiles_leave_light_lane_free(server, short):
    """Three requests with n=16 and a costly schema (within the bounds) were compiled 16 times
    each on the two-permit pool, and light requests queued behind them; now each compiles
    once, in the heavy lane, and a light chat request beside them stays fast."""
    objects, props = (12, 200) if short else (20, 240)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "n": 16,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "x",
                                                "schema": heavy_schema(objects, props)}}}
    light, stop = [], threading.Event()
    probe = threading.Thread(target=timed_light, args=(server, light, stop), daemon=True)
    heavy_status = []

    def heavy():
        try:
            heavy_status.append(server.post("/v1/chat/completions", body, timeout=80).status_code)
        except requests.RequestException as e:
            heavy_status.append(type(e).__name__)

    heavies = [threading.Thread(target=heavy, daemon=True) for _ in range(3)]
    started = time.monotonic()
    for h in heavies:
        h.start()
    time.sleep(0.2)
    probe.start()
    for h in heavies:
        h.join(timeout=85)
    stop.set()
    probe.join(timeout=65)
    took = time.monotonic() - started
    assert light, "no light request completed"
    worst = max(t for t, _ in light)
    assert all(ok for _, ok in light), f"a light request failed: {light}"
    assert worst <= 2.0, f"a light chat request waited {worst:.1f} s behind heavy compiles"
    assert heavy_status == [200] * 3, f"heavy requests answered {heavy_status}"
    print(f"     heavy requests {heavy_status} in {took:.1f} s; light worst {worst:.2f} s "
          f"over {len(light)}")


@attack("grammar_huge_prompts_refused_fast", budget_s=60, max_rss_growth_mib=1024)
def huge_prompts_refused_fast(server, short):
    """15 MB prompts (far more tokens than the context, under the byte pre-check) were
    tokenized whole before their 400 (12 s), and two big /tokenize calls held the pool (chat
    waited 30 s). Now counting stops past the context: refused in well under a second of
    tokenizing, while chat stays responsive."""
    size = 2_000_000 if short else 15_000_000
    text = "word " * (size // 5)
    big = [
        ("/tokenize", {"prompt": text}, "prompt"),
        ("/tokenize", {"prompt": text}, "prompt"),
        ("/v1/chat/completions",
         {"messages": [{"role": "user", "content": text}], "max_tokens": 1}, "messages"),
        ("/v1/completions", {"prompt": text, "max_tokens": 1}, "prompt"),
    ]
    answers = [None] * len(big)

    def send(i):
        path, body, _ = big[i]
        t = time.monotonic()
        try:
            r = server.post(path, body, timeout=55)
            answers[i] = (r, time.monotonic() - t)
        except requests.RequestException as e:
            answers[i] = (e, time.monotonic() - t)

    light, stop = [], threading.Event()
    probe = threading.Thread(target=timed_light, args=(server, light, stop), daemon=True)
    senders = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(len(big))]
    for s in senders:
        s.start()
    probe.start()
    for s in senders:
        s.join(timeout=58)
    stop.set()
    probe.join(timeout=30)
    for (path, _, param), answer in zip(big, answers):
        assert answer is not None, f"{path}: no answer"
        r, took = answer
        assert not isinstance(r, Exception), f"{path}: {type(r).__name__} after {took:.1f} s"
        error = openai_error(r, 400)
        assert error["param"] == param, error
        assert took <= 4.0, f"{path}: refused after {took:.1f} s"
    assert light, "no light request completed"
    worst = max(t for t, _ in light)
    assert worst <= 2.0, f"a light chat request waited {worst:.1f} s behind big prompts"
