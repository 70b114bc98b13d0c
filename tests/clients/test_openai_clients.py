"""What users of vLLM run against tealight: raw `requests`, and the `openai` SDK with strict
response validation (every response is checked against the SDK's pydantic models)."""

import json

import pytest
import requests
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conftest import API_KEY, MODEL

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server, api_key=API_KEY, _strict_response_validation=True)


def detokenize(server, ids):
    root = server.removesuffix("/v1")
    r = requests.post(f"{root}/detokenize", json={"tokens": ids}, headers=HEADERS, timeout=30)
    r.raise_for_status()
    return r.json()["prompt"]


def test_requests_post_reads_content_finish_reason_and_usage(server):
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
        "max_tokens": 2048,
        "temperature": 0.7,
        "top_p": 1.0,
    }
    r = requests.post(f"{server}/chat/completions", headers=HEADERS, json=payload, timeout=600)
    assert r.status_code == 200, r.text
    data = r.json()
    ChatCompletion.model_validate(data, strict=True)
    choice = data["choices"][0]
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 2048
    if choice["finish_reason"] == "length":
        assert usage["completion_tokens"] == 2048


def test_sdk_chat_matches_the_reference(client, server, reference):
    messages = [{"role": "system", "content": "你是一个小助手"}, {"role": "user", "content": "你好"}]
    # As a user writes it (the model's own sampling defaults); capped because the tiny noise
    # model would otherwise write to the end of the context.
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=64)
    assert plain.choices[0].message.role == "assistant"
    assert plain.usage.prompt_tokens == len(reference["prompt_ids"])
    # Greedy: exactly the tokens HF transformers produced.
    greedy = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=40,
        extra_body={"ignore_eos": True},
    )
    assert greedy.choices[0].message.content == detokenize(server, reference["greedy"])
    assert greedy.choices[0].finish_reason == "length"
    assert greedy.usage.prompt_tokens == len(reference["prompt_ids"])
    assert greedy.usage.completion_tokens == 40


def test_multi_turn_streaming_loop(client):
    history = [{"role": "system", "content": "You are a helpful assistant."}]
    for question in ["Hello!", "Tell me more."]:
        history.append({"role": "user", "content": question})
        stream = client.chat.completions.create(
            model=MODEL, messages=history, stream=True, max_tokens=1000
        )
        reply = ""
        first = True
        finish = None
        for chunk in stream:
            assert isinstance(chunk, ChatCompletionChunk)
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if first:
                assert delta.role == "assistant"
                first = False
            reply += delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        assert finish in ("stop", "length")
        history.append({"role": "assistant", "content": reply})
    assert len(history) == 5


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            # Bounded, so the forced call always completes within max_tokens (the random-weight
            # model would otherwise write an unbounded string or extra keys until `length`).
            "properties": {"city": {"type": "string", "maxLength": 24}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_tool_round_trip(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=256,
    )
    message = first.choices[0].message
    # A named tool_choice is enforced by a grammar: exactly one call, valid JSON arguments.
    assert first.choices[0].finish_reason == "tool_calls", first.choices[0]
    assert message.tool_calls and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and len(arguments["city"]) <= 24
    assert set(arguments) == {"city"}
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{
            "id": call.id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},
        }],
    }
    tool = {"role": "tool", "tool_call_id": assistant["tool_calls"][0]["id"], "content": '{"temp_c": 21}'}
    second = client.chat.completions.create(
        model=MODEL, messages=messages + [assistant, tool], tools=[WEATHER], max_tokens=16,
    )
    assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert second.usage.prompt_tokens > first.usage.prompt_tokens


def test_stream_include_usage(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count to five."}],
        stream=True, max_tokens=20, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 20
    assert last.usage.total_tokens == last.usage.prompt_tokens + 20
    assert all(c.usage is None for c in chunks[:-1])


def test_errors_are_openai_exceptions(client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                       temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    bad = OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
