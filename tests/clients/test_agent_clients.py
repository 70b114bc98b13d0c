"""The agent-facing APIs through their own SDKs: the `openai` Responses client (strict response
validation, the `responses.stream()` helper) and the `anthropic` SDK (`messages.create`, the
`messages.stream()` accumulator Claude Code is built on, `count_tokens`).

The embedded model has random weights, so its text is noise and it never chooses to call a
tool: tool calls are forced with `tool_choice` (the grammar makes them valid), and greedy
decoding (`temperature=0`) makes a streamed run and a non-streamed run produce the same tokens,
so their texts and arguments can be compared exactly.
"""

import json

import anthropic
import pytest
import requests
from openai import BadRequestError, NotFoundError, OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from conftest import API_KEY, MODEL

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather of a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
EVENTS = TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module")
def openai_client(server):
    return OpenAI(base_url=server, api_key=API_KEY, _strict_response_validation=True)


@pytest.fixture(scope="module")
def claude(server):
    # The SDK sends the key as `x-api-key`, as Claude Code does with ANTHROPIC_API_KEY.
    return anthropic.Anthropic(base_url=server.removesuffix("/v1"), api_key=API_KEY)


def raw_events(server, body):
    """The SSE events of a streamed request, each checked against the SDK's event models."""
    r = requests.post(
        f"{server}/responses", json={**body, "stream": True},
        headers={"Authorization": f"Bearer {API_KEY}"}, stream=True, timeout=300,
    )
    assert r.status_code == 200, r.text
    events, name = [], None
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
            assert data["type"] == name, "each event is named by an event: line"
            EVENTS.validate_python(data)
            events.append(data)
    return events


# --- Responses API -------------------------------------------------------------------------


def test_responses_create_text_and_stream_agree(openai_client, server):
    args = dict(model=MODEL, input="Write one line about the sea.", temperature=0,
                max_output_tokens=24, reasoning={"effort": "none"})
    plain = openai_client.responses.create(**args)
    assert isinstance(plain, Response)
    assert plain.status == "incomplete"
    assert plain.incomplete_details.reason == "max_output_tokens"
    assert plain.usage.output_tokens == 24
    assert plain.usage.total_tokens == plain.usage.input_tokens + 24
    message = plain.output[-1]
    assert message.type == "message" and message.status == "incomplete"

    # The helper's get_final_response() exists only for completed responses; a cut one ends
    # with `response.incomplete`, which carries the final object.
    with openai_client.responses.stream(**args) as stream:
        events = list(stream)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert events[-1].type == "response.incomplete"
    assert deltas == plain.output_text == final.output_text
    assert final.usage.output_tokens == 24

    events = raw_events(server, {k: v for k, v in args.items()})
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.incomplete"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == events[-1]["response"]["output"]


def test_responses_tool_round_trip(openai_client):
    forced = {"type": "function", "name": "get_weather"}
    first = openai_client.responses.create(
        model=MODEL, input="Weather in Paris?", tools=[WEATHER], tool_choice=forced,
        temperature=0,
    )
    assert first.status == "completed"
    calls = [i for i in first.output if i.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    assert set(json.loads(call.arguments)) == {"city"}

    with openai_client.responses.stream(
        model=MODEL, input="Weather in Paris?", tools=[WEATHER], tool_choice=forced,
        temperature=0,
    ) as stream:
        argument_deltas = "".join(
            e.delta for e in stream if e.type == "response.function_call_arguments.delta")
        streamed = stream.get_final_response()
    streamed_call = [i for i in streamed.output if i.type == "function_call"][0]
    assert argument_deltas == streamed_call.arguments == call.arguments

    # Send the call and its output back, as an agent loop does; the model answers in text.
    follow = openai_client.responses.create(
        model=MODEL, tools=[WEATHER], temperature=0, max_output_tokens=8,
        input=[{"role": "user", "content": "Weather in Paris?"},
               call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert follow.status in ("completed", "incomplete")
    assert follow.usage.input_tokens > first.usage.input_tokens


def test_responses_store_and_previous_response_id(openai_client):
    first = openai_client.responses.create(
        model=MODEL, input="Remember: blue.", max_output_tokens=4, store=True)
    fetched = openai_client.responses.retrieve(first.id)
    assert fetched.id == first.id and fetched.output == first.output
    second = openai_client.responses.create(
        model=MODEL, input="What did I say?", previous_response_id=first.id, max_output_tokens=4)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens
    with pytest.raises(NotFoundError):
        openai_client.responses.retrieve("resp_does_not_exist")
    with pytest.raises(NotFoundError):
        openai_client.responses.create(
            model=MODEL, input="x", previous_response_id="resp_does_not_exist")


def test_responses_json_schema_output(openai_client):
    schema = {"type": "object", "properties": {"n": {"type": "string", "maxLength": 8}},
              "required": ["n"], "additionalProperties": False}
    r = openai_client.responses.create(
        model=MODEL, input="A number.", reasoning={"effort": "none"},
        text={"format": {"type": "json_schema", "name": "num", "schema": schema, "strict": True}},
    )
    assert r.status == "completed"
    assert set(json.loads(r.output_text)) == {"n"}


def test_responses_bad_requests(openai_client):
    with pytest.raises(BadRequestError) as e:
        openai_client.responses.create(model=MODEL, input=[{"role": "critic", "content": "x"}])
    assert "critic" in str(e.value)
    with pytest.raises(BadRequestError):
        openai_client.responses.create(model=MODEL, input="x", max_output_tokens=0)


# --- Anthropic Messages API ----------------------------------------------------------------

# Current SDKs no longer offer sampling settings; the server still reads them.
GREEDY = {"temperature": 0}
TOOL = {
    "name": "get_weather",
    "description": "Current weather of a city.",
    "input_schema": WEATHER["parameters"],
}


def test_messages_create_and_stream_agree(claude):
    args = dict(model="claude-haiku-4-5", max_tokens=20, extra_body=GREEDY,
                system="You are terse.",
                messages=[{"role": "user", "content": "Write one line about the sea."}])
    plain = claude.messages.create(**args)
    assert plain.type == "message" and plain.role == "assistant"
    assert plain.model == "claude-haiku-4-5"
    assert plain.stop_reason == "max_tokens"
    assert plain.usage.output_tokens == 20
    assert [b.type for b in plain.content] == ["text"]

    with claude.messages.stream(**args) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == plain.content[0].text == final.content[0].text
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 20
    total = final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0)
    assert total == plain.usage.input_tokens + (plain.usage.cache_read_input_tokens or 0)


def test_messages_tool_use_and_result(claude):
    args = dict(model="claude-haiku-4-5", max_tokens=200, extra_body=GREEDY, tools=[TOOL],
                tool_choice={"type": "tool", "name": "get_weather"},
                messages=[{"role": "user", "content": "Weather in Paris?"}])
    plain = claude.messages.create(**args)
    assert plain.stop_reason == "tool_use"
    use = [b for b in plain.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.id.startswith("toolu_")
    assert set(use.input) == {"city"}

    with claude.messages.stream(**args) as stream:
        final = stream.get_final_message()
    streamed = [b for b in final.content if b.type == "tool_use"][0]
    assert streamed.input == use.input

    follow = claude.messages.create(
        model="claude-haiku-4-5", max_tokens=8, tools=[TOOL],
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": [b.model_dump() for b in plain.content]},
                  {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}],
    )
    assert follow.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_messages_count_tokens_matches_usage(claude):
    messages = [{"role": "user", "content": "Count me."}]
    counted = claude.messages.count_tokens(model="any-model", system="S.", messages=messages)
    used = claude.messages.create(model="any-model", max_tokens=1, system="S.", messages=messages)
    assert counted.input_tokens == used.usage.input_tokens + (used.usage.cache_read_input_tokens or 0)


def test_messages_beta_route_and_anthropic_shaped_errors(claude, server):
    r = claude.beta.messages.create(
        model="background-task-model", max_tokens=6, extra_body=GREEDY,
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 6
    bad = anthropic.Anthropic(base_url=server.removesuffix("/v1"), api_key="wrong")
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="m", max_tokens=5, messages=[{"role": "critic", "content": "x"}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "critic" in e.value.body["error"]["message"]


def test_messages_structured_output(claude):
    schema = {"type": "object", "properties": {"n": {"type": "string", "maxLength": 8}},
              "required": ["n"], "additionalProperties": False}
    r = claude.messages.create(
        model="m", max_tokens=50, messages=[{"role": "user", "content": "A number."}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert r.stop_reason == "end_turn"
    assert set(json.loads(r.content[0].text)) == {"n"}
