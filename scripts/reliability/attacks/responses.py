"""The Responses and Messages APIs: what the response store keeps, how a stored response is
served, and what agents need of a refusal (Codex's `context_length_exceeded`, Anthropic's
"prompt is too long") and of the fields they send (`truncation: "auto"`, `conversation`,
`background`, `include`, `top_logprobs`, `item_reference`): each works or is a 400 naming it.
"""

import re
import threading
import time

import requests

from .harness import attack, openai_error

# A context small enough for prompts over it to be cheap to build and to refuse.
SMALL_CONTEXT = ("--max-model-len", "4096")


def number_array(mib):
    """JSON text of about `mib` MiB of small numbers: a parsed value takes ~16x its text."""
    count = int(mib * (1 << 20) / 2)
    return "[" + ",".join(["7"] * count) + "]"


def raw_post(server, path, body_text, timeout=120):
    return requests.post(f"{server.url}{path}", data=body_text, timeout=timeout,
                         headers={"content-type": "application/json"})


def payload_requests(mib):
    """store:true requests that hide a number array where no prompt reads it: an item
    reference's payload, a hosted-tool call item, a hosted tool, a message's extra field,
    metadata. Built as text so the client never holds the parsed arrays."""
    junk = number_array(mib)
    user = '{"role": "user", "content": "hi"}'
    return [
        f'{{"input": [{{"type": "item_reference", "id": "msg_x", "payload": {junk}}}, {user}],'
        ' "max_output_tokens": 1}',
        f'{{"input": [{user}, {{"type": "web_search_call", "id": "ws_1", "action": {{"q": {junk}}}}}],'
        ' "max_output_tokens": 1}',
        f'{{"input": "hi", "tools": [{{"type": "web_search", "filters": {junk}}}], "max_output_tokens": 1}}',
        f'{{"input": [{{"role": "user", "content": "hi", "extra": {junk}}}], "max_output_tokens": 1}}',
        f'{{"input": "hi", "metadata": {{"k": {junk}}}, "max_output_tokens": 1}}',
        f'{{"input": [{{"type": "image_generation_call", "id": "ig_1", "result": {junk}}}, {user}],'
        ' "max_output_tokens": 1}',
    ]


@attack("responses_store_memory", max_rss_growth_mib=600)
def store_memory(server, short):
    """Payloads the prompt ignores are dropped or refused, never kept: after every request,
    resident memory is back within one request's parse of where it started (old main kept each
    as parsed values, ~16x the bytes the store counted)."""
    mib = 1.5 if short else 5
    rounds = 2
    start = server.rss_mib()
    for _ in range(rounds):
        for body in payload_requests(mib):
            r = raw_post(server, "/v1/responses", body)
            assert r.status_code in (200, 400), f"{r.status_code}: {r.text[:300]}"
    time.sleep(0.5)
    grown = server.rss_mib() - start
    sent = mib * rounds * len(payload_requests(0.0))
    # The allocator may keep the pages of the last request's parse (~16x its payload).
    bound = 64 + 16 * mib
    assert grown <= bound, (
        f"RSS stayed {grown:.0f} MiB above its start after {sent:.0f} MiB of ignored payloads "
        f"(bound {bound:.0f} MiB: nothing of them should be kept)")


@attack("responses_store_cap", flags=("--response-store-max-bytes", "1MiB",
                                      "--response-store-max-entries", "64",
                                      "--response-store-ttl", "600"),
        max_rss_growth_mib=200)
def store_cap(server, short):
    """The store holds what it counts: responses whose kept text is large (long inputs the
    prompt reads, many bytes a token) overflow a 1 MiB store many times over; what stays
    retrievable fits the cap, the oldest go, the newest stay, and memory stops growing."""
    count = 12 if short else 40
    text = "=" * 200_000  # ~200 KB kept per response; 3k tokens, a shared (cached) prefix
    ids, sizes = [], {}
    rss_after_first = None
    for i in range(count):
        r = server.post("/v1/responses", {"input": f"{text} {i}", "max_output_tokens": 1},
                        timeout=120)
        assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
        ids.append(r.json()["id"])
        sizes[ids[-1]] = len(r.content)
        if rss_after_first is None:
            rss_after_first = server.rss_mib()
    grown = server.rss_mib() - rss_after_first
    kept = [rid for rid in ids if server.get(f"/v1/responses/{rid}").status_code == 200]
    assert ids[-1] in kept and ids[0] not in kept, f"kept {len(kept)} of {len(ids)}"
    # Each keeps its response text and its conversation (the input again): twice its size.
    held = sum(2 * sizes[rid] for rid in kept)
    assert held <= (1 << 20) + 64 * 1024, f"{len(kept)} responses of ~{held >> 10} KiB kept"
    assert grown <= 48, f"RSS grew {grown:.0f} MiB past the first response with a 1 MiB store"


@attack("responses_get_nonblocking", max_rss_growth_mib=1200)
def get_nonblocking(server, short):
    """Concurrent GETs of a stored response (posted with a big payload the prompt ignores)
    are served from the stored bytes: nothing sized by the payload is done or allocated per
    GET, and /health is not held up (old main kept the payload as parsed values and cloned and
    serialized them on the async workers for every GET)."""
    mib = 12 if short else 16
    junk = number_array(mib)
    # A hosted tool's payload: old main echoed it in the response object GET serves.
    body = (f'{{"input": "hi", "tools": [{{"type": "web_search", "filters": {junk}}}],'
            f' "max_output_tokens": 1}}')
    r = raw_post(server, "/v1/responses", body)
    assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
    rid = r.json()["id"]
    del body, junk
    time.sleep(0.5)
    before = server.rss_mib()
    deadline = time.monotonic() + (4 if short else 10)
    errors, worst, peak = [], [0.0], [before]

    def fetch():
        while time.monotonic() < deadline:
            t = time.monotonic()
            try:
                g = requests.get(f"{server.url}/v1/responses/{rid}", timeout=30)
                _ = g.content  # read, never parsed here (the GIL would stall the prober)
                if g.status_code != 200:
                    errors.append(g.status_code)
            except requests.RequestException as e:
                errors.append(type(e).__name__)
            worst[0] = max(worst[0], time.monotonic() - t)
            peak[0] = max(peak[0], server.rss_mib())

    workers = [threading.Thread(target=fetch) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, f"GET failed: {errors[:3]}"
    assert worst[0] <= 0.5, f"a GET took {worst[0]:.2f} s"
    grew = peak[0] - before
    assert grew <= 32, f"RSS rose {grew:.0f} MiB while the stored response was fetched"


def long_conversation():
    """Twenty user turns of ~300 tokens: ~6,000 tokens against a 4,096-token context."""
    return [{"role": "user", "content": f"turn {i}: " + "hello " * 300} for i in range(20)]


@attack("responses_context_codes", flags=SMALL_CONTEXT)
def context_codes(server, short):
    """A prompt over the context: code `context_length_exceeded` on /v1/responses and chat
    completions (Codex compacts on it), Anthropic's "prompt is too long: N tokens > M maximum"
    on /v1/messages (Claude Code compacts on it)."""
    r = server.post("/v1/responses", {"input": long_conversation(), "max_output_tokens": 2})
    openai_error(r, 400, code="context_length_exceeded")
    r = server.post("/v1/responses", {"input": "x", "max_output_tokens": 5000})
    openai_error(r, 400, code="context_length_exceeded")
    r = server.post("/v1/chat/completions",
                    {"messages": [{"role": "user", "content": "hello " * 5000}]})
    openai_error(r, 400, code="context_length_exceeded")
    for text in ("hello " * 5000, "a" * 2_000_000):
        for stream in (False, True):
            r = server.post("/v1/messages", {"model": "m", "max_tokens": 5, "stream": stream,
                                             "messages": [{"role": "user", "content": text}]})
            assert r.status_code == 400, f"{r.status_code}: {r.text[:300]}"
            error = r.json().get("error", {})
            assert error.get("type") == "invalid_request_error", r.text[:300]
            m = re.fullmatch(r"prompt is too long: (\d+) tokens > (\d+) maximum",
                             error.get("message", ""))
            assert m and int(m[1]) > int(m[2]) == 4096, f"not Anthropic's wording: {r.text[:300]}"


@attack("responses_truncation_auto", flags=SMALL_CONTEXT)
def truncation_auto(server, short):
    """`truncation: "auto"` drops the oldest items until the prompt fits, instead of a 400."""
    for stream in (False, True):
        r = server.post("/v1/responses", {"input": long_conversation(), "truncation": "auto",
                                          "instructions": "Answer briefly.",
                                          "max_output_tokens": 20, "stream": stream})
        assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
        if stream:
            events = [line for line in r.text.splitlines() if line.startswith("event:")]
            assert events and events[-1].split(":", 1)[1].strip() in (
                "response.completed", "response.incomplete"), events[-3:]
        else:
            body = r.json()
            assert body["truncation"] == "auto", body["truncation"]
            used = body["usage"]["input_tokens"]
            assert 3000 < used <= 4096 - 20, f"input_tokens {used}"


@attack("responses_ignored_fields", flags=SMALL_CONTEXT)
def ignored_fields(server, short):
    """Fields old main accepted and dropped in silence: each is now a 400 naming it (or works:
    `include: ["reasoning.encrypted_content"]`, a stored item's `item_reference`)."""
    cases = [
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"top_logprobs": 99}, "top_logprobs"),
        ({"include": ["web_search_call.results"]}, "include[0]"),
        ({"include": ["reasoning.encrypted_content", "file_search_call.results"]}, "include[1]"),
        ({"input": [{"type": "item_reference", "id": "msg_never"},
                    {"role": "user", "content": "x"}]}, "input[0]"),
    ]
    for extra, param in cases:
        body = {"input": "x", "max_output_tokens": 1, **extra}
        error = openai_error(server.post("/v1/responses", body), 400)
        assert error["param"] == param, f"{extra}: param {error['param']!r}, expected {param!r}"
    ok = server.post("/v1/responses", {"input": "x", "max_output_tokens": 1,
                                       "include": ["reasoning.encrypted_content"]})
    assert ok.status_code == 200, ok.text[:300]
    # Logprobs work: the message's output_text part has one entry a token, with alternatives.
    r = server.post("/v1/responses", {
        "input": "x", "max_output_tokens": 8, "top_logprobs": 2, "temperature": 0,
        "reasoning": {"effort": "none"}, "include": ["message.output_text.logprobs"]})
    assert r.status_code == 200, r.text[:300]
    parts = [p for item in r.json()["output"] if item["type"] == "message"
             for p in item["content"]]
    assert parts and parts[0]["logprobs"], f"no logprobs: {r.text[:300]}"
    entry = parts[0]["logprobs"][0]
    assert {"token", "logprob", "bytes", "top_logprobs"} <= set(entry), entry
    assert len(entry["top_logprobs"]) == 2, entry
    item = ok.json()["output"][0]["id"]
    r = server.post("/v1/responses", {"max_output_tokens": 1, "input": [
        {"type": "item_reference", "id": item}, {"role": "user", "content": "and?"}]})
    assert r.status_code == 200, f"a stored item's reference: {r.status_code} {r.text[:300]}"
