"""Qwen3-Coder's tool calls seen by the openai SDK: a server whose chat template is Qwen3-Coder's
(no parser flag: the template picks the `qwen3_coder` format) answers a forced call that the
SDK's strict parsing (`chat.completions.parse` with a strict pydantic tool) turns into the typed
model, and the streamed call's argument deltas concatenate to the same arguments."""

import json
from typing import Literal

import openai
import pydantic
import pytest

from conftest import API_KEY, BINARY, MODEL, ROOT
from replicas import start_replica  # on the path through conftest

LOG_DIR = ROOT / "target" / "coder-tool-tests"
TEMPLATE = ROOT / "tests" / "fixtures" / "templates" / "qwen3_coder.jinja"


class SetMode(pydantic.BaseModel):
    """Sets the mode."""
    model_config = pydantic.ConfigDict(extra="forbid")
    mode: Literal["fast", "safe", "off"]
    level: int = pydantic.Field(ge=0, le=9)
    verbose: bool


@pytest.fixture(scope="module")
def client():
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    replica = start_replica(LOG_DIR, ["--api-key", API_KEY, "--kv-cache-memory", "64MiB",
                                      "--chat-template", str(TEMPLATE), "--reasoning-parser", "none"],
                            "coder", binary=BINARY)
    yield openai.OpenAI(base_url=f"{replica.url}/v1", api_key=API_KEY, max_retries=0,
                        _strict_response_validation=True)
    replica.stop()


REQUEST = dict(
    model=MODEL,
    messages=[{"role": "user", "content": "Switch to safe mode, level 3."}],
    tools=[openai.pydantic_function_tool(SetMode, name="set_mode")],
    tool_choice={"type": "function", "function": {"name": "set_mode"}},
    temperature=0,
    max_tokens=200,
)


def test_a_forced_coder_call_parses_strictly(client):
    completion = client.chat.completions.parse(**REQUEST)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.function.name == "set_mode"
    assert isinstance(call.function.parsed_arguments, SetMode), call
    # Typed by the schema: an integer and a boolean, not the strings the markup holds.
    args = json.loads(call.function.arguments)
    assert isinstance(args["level"], int) and isinstance(args["verbose"], bool), args


def test_streamed_coder_call_concatenates_to_the_same_arguments(client):
    whole = client.chat.completions.create(**REQUEST).choices[0].message.tool_calls[0]
    names, pieces, finish = [], [], None
    for chunk in client.chat.completions.create(**REQUEST, stream=True):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            if delta.function.name:
                names.append(delta.function.name)
            pieces.append(delta.function.arguments or "")
        finish = choice.finish_reason or finish
    assert names == ["set_mode"] and finish == "tool_calls"
    assert "".join(pieces) == whole.function.arguments
    SetMode.model_validate_json("".join(pieces), strict=True)
