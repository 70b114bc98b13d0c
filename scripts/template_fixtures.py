"""Writes tests/fixtures/templates/cases.json: chat-template prompts rendered by HF transformers.

Each case holds the request-shaped inputs (messages as an OpenAI client sends them, tools,
add_generation_prompt, template kwargs, continue_final_message, optionally a custom template)
and what transformers makes of them: the prompt string from
`tokenizer.apply_chat_template(..., tokenize=False)` and the ids from
`tokenizer(prompt, add_special_tokens=False)`. A case whose render raises in transformers is
recorded with `"error": true` and no prompt.

Messages pass through `prepare_messages` below before transformers sees them. It mirrors what
an OpenAI-compatible server does (and what vLLM does): content-part arrays are joined into one
string with "\n", and a missing or null content becomes "". The Rust side must apply the same
step (`tealight::tokenizer::prepare_messages`) before rendering.

Run from the repository root:  /work/refenv/bin/python scripts/template_fixtures.py
"""

import copy
import json
import os
import sys

from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "qwen3-tiny")
OUT = os.path.join(ROOT, "tests", "fixtures", "templates", "cases.json")


def prepare_messages(messages):
    out = []
    for message in messages:
        message = copy.deepcopy(message)
        content = message.get("content")
        if content is None:
            message["content"] = ""
        elif isinstance(content, list):
            message["content"] = "\n".join(part["text"] for part in content)
        out.append(message)
    return out


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "查询某个城市的天气 (weather lookup) — returns °C",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "城市名称, e.g. 北京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
            },
            "required": ["city"],
        },
    },
}

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_documents",
        "description": 'Full-text search with "quotes", back\\slashes, <tags> & emoji 🔍',
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "filters": {
                    "type": "object",
                    "properties": {
                        "date_range": {
                            "type": "object",
                            "properties": {
                                "from": {"type": "string", "format": "date"},
                                "to": {"type": "string", "format": "date"},
                            },
                        },
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "min_score": {"type": "number", "default": 0.5, "minimum": 1e-05},
                        "boost": {"type": "number", "default": 1.0, "maximum": 1e16},
                        "strict": {"type": "boolean", "default": False},
                        "fallback": {"default": None},
                    },
                },
                "limit": {"type": "integer", "default": 10},
            },
            "required": ["query"],
        },
    },
}

LONG_TEXT = (
    "Rust is a multi-paradigm, general-purpose programming language that emphasizes performance, "
    "type safety, and concurrency. It enforces memory safety, meaning that all references point to "
    "valid memory, without a garbage collector. To simultaneously enforce memory safety and prevent "
    "data races, its \"borrow checker\" tracks the object lifetime of all references in a program "
    "during compilation.\n\n"
    "Rust 是一种注重性能、类型安全和并发的通用编程语言。它在没有垃圾回收器的情况下保证内存安全，"
    "所有引用都指向有效的内存。借用检查器在编译期间跟踪程序中所有引用的生命周期。\n\n"
    "    fn main() {\n        let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n"
    "        println!(\"{v:?}\");\n    }\n\n"
    "Summarise the text above in three bullet points, then translate them into Japanese (日本語), "
    "and finally add one emoji per bullet 🦀🚀✨. Keep tabs\tand trailing spaces   \n"
)

CUSTOM_TOJSON = (
    "{{ tools | tojson }}\n"
    "{{ tools | tojson(indent=2) }}\n"
    "{{ tools | tojson(indent='\\t', sort_keys=true) }}\n"
    "{{ tools | tojson(separators=[',', ':']) }}\n"
    "{{ tools | tojson(ensure_ascii=true) }}\n"
    "{{ [] | tojson(indent=2) }}{{ {} | tojson(indent=2) }}\n"
    "{{ {'a': [1, 2.5, -0.0, 1e-7, 123456789.125, 1e22, 0.1, 100.0, 3.0e15], 'b': none, 't': true} | tojson }}\n"
    "{{ 'ctl:\\x01\\x1f\\x7f \\u2028 </script>' | tojson }}"
)

CUSTOM_PY = (
    "{%- for message in messages[::-1] %}"
    "{{ loop.index }}/{{ loop.length }}:{{ message.role }}"
    "{% if loop.first %}(first){% endif %}{% if loop.last %}(last){% endif %}"
    "|{{ message.content.strip() }}|{{ message.content.lstrip(' x') }}|{{ message.content.rstrip('y ') }}"
    "|{{ message.content.split(',') | length }}|{{ message.content.split()[0] }}"
    "|{{ message.content.upper() }}|{{ message.content.replace(',', ';') }}"
    "|{{ message.content.startswith(('  x', 'no')) }}|{{ message.content.endswith('y  ') }}\n"
    "{% endfor %}"
    "{%- set ns = namespace(count=0, names='') %}"
    "{%- for message in messages %}{% set ns.count = ns.count + 1 %}{% set ns.names = ns.names ~ message.role %}{% endfor %}"
    "{{ ns.count }} {{ ns.names }}\n"
    "{{ 1e16 }} {{ 0.1 + 0.2 }} {{ none }} {{ true }} {{ false }} {{ 2.0 }} {{ 7 // 2 }} {{ -7 % 3 }}\n"
    "[{{ eos_token }}][{{ pad_token }}][{{ bos_token }}][{{ bos_token is defined }}]\n"
    "{%- for k, v in messages[0].items() %} {{ k }}={{ v }}{% endfor %}\n"
    "{% if custom_flag is defined %}flag={{ custom_flag }}{% endif %}\n"
    "  {% if true %}\n    lstrip and trim\n  {% endif %}\n"
    "{{ 'end' }}\n\n"
)

CUSTOM_RAISE = (
    "{%- for message in messages %}"
    "{%- if message.role not in ['user', 'assistant'] %}{{ raise_exception('bad role: ' + message.role) }}{% endif %}"
    "{{ message.content }}"
    "{%- endfor %}"
)


def cases():
    out = []

    def add(name, messages, tools=None, add_generation_prompt=True, kwargs=None,
            continue_final_message=False, template=None):
        out.append({
            "name": name,
            "messages": messages,
            "tools": tools,
            "add_generation_prompt": add_generation_prompt,
            "continue_final_message": continue_final_message,
            "kwargs": kwargs or {},
            "template": template,
        })

    add("zh_system_user", [
        {"role": "system", "content": "你是一个小助手"},
        {"role": "user", "content": "你好"},
    ])
    add("en_multiturn_system", [
        {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And of Germany?"},
        {"role": "assistant", "content": "Berlin."},
        {"role": "user", "content": "Thanks!  Now list both, comma separated.\n"},
    ])
    add("no_system_single_user", [{"role": "user", "content": "Hello"}])
    add("think_blocks_in_history", [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nSimple arithmetic: 2+2=4.\n</think>\n\nThe answer is 4."},
        {"role": "user", "content": "Times 3?"},
    ])
    add("think_block_final_assistant_no_gen_prompt", [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\n\nSimple arithmetic.\n\n</think>\n\n\nThe answer is 4."},
    ], add_generation_prompt=False)
    add("think_without_open_tag", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "reasoning without an open tag</think>Hello!"},
    ], add_generation_prompt=False)
    add("reasoning_content_field", [
        {"role": "system", "content": "Think step by step."},
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "Yes, 17 is prime.",
         "reasoning_content": "\nCheck divisors 2, 3: none divide 17.\n"},
    ], add_generation_prompt=False)
    add("reasoning_content_in_history", [
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "Yes.", "reasoning_content": "Check divisors."},
        {"role": "user", "content": "And 21?"},
    ])
    add("reasoning_field_alias", [
        {"role": "user", "content": "Is 21 prime?"},
        {"role": "assistant", "content": "No, 21 = 3 × 7.", "reasoning": "Try 3: 21 / 3 = 7."},
    ], add_generation_prompt=False)
    add("reasoning_content_null", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!", "reasoning_content": None},
    ], add_generation_prompt=False)
    add("tools_with_system", [
        {"role": "system", "content": "You are a helpful assistant with tools."},
        {"role": "user", "content": "北京今天天气怎么样？"},
    ], tools=[WEATHER_TOOL, SEARCH_TOOL])
    add("tools_without_system", [
        {"role": "user", "content": "Find documents about \"borrow checker\"."},
    ], tools=[SEARCH_TOOL])
    add("tools_empty_list", [{"role": "user", "content": "No tools here."}], tools=[])
    add("tool_calls_and_responses", [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Weather in Beijing and Shanghai, and search for 烤鸭 recipes?"},
        {"role": "assistant", "content": "",
         "reasoning_content": "I need two weather lookups and one search.",
         "tool_calls": [
             {"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\", \"days\": 2}"}},
             {"id": "call_2", "type": "function",
              "function": {"name": "get_weather", "arguments": {"city": "上海", "unit": "fahrenheit"}}},
             {"id": "call_3", "type": "function",
              "function": {"name": "search_documents",
                           "arguments": {"query": "烤鸭 recipe", "filters": {
                               "tags": ["food", "北京"], "min_score": 0.75,
                               "date_range": {"from": "2024-01-01", "to": None}, "strict": True},
                               "limit": 3}}},
         ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21, \"sky\": \"晴\"}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\": 75.2, \"sky\": \"cloudy\"}"},
        {"role": "tool", "tool_call_id": "call_3", "content": "[\"Peking duck 🦆 in 10 steps\"]"},
    ], tools=[WEATHER_TOOL, SEARCH_TOOL])
    add("tool_calls_null_content_then_answer", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_a", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny, 25°C"},
        {"role": "assistant", "content": "It is sunny and 25°C in Paris."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_b", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "rain"},
    ], tools=[WEATHER_TOOL])
    add("tool_calls_without_function_wrapper", [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "content": "snow"},
    ], tools=[WEATHER_TOOL])
    add("user_tool_response_multi_step", [
        {"role": "user", "content": "Start."},
        {"role": "assistant", "content": "<think>\nplan\n</think>\n\nCalling.",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "user", "content": "<tool_response>\nok\n</tool_response>"},
        {"role": "assistant", "content": "<think>\nnext\n</think>\n\nDone."},
    ], add_generation_prompt=False)
    add("enable_thinking_false", [
        {"role": "system", "content": "你是一个小助手"},
        {"role": "user", "content": "你好"},
    ], kwargs={"enable_thinking": False})
    add("enable_thinking_true", [
        {"role": "user", "content": "Solve x^2 = 4."},
    ], kwargs={"enable_thinking": True})
    add("no_generation_prompt", [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "answer"},
    ], add_generation_prompt=False)
    add("long_prompt", [
        {"role": "system", "content": "You are an expert technical writer. " * 8},
        {"role": "user", "content": LONG_TEXT},
        {"role": "assistant", "content": "<think>\nThe user wants bullets.\n</think>\n\n- Rust is fast\n- Safe\n- Concurrent"},
        {"role": "user", "content": LONG_TEXT.upper()},
    ], tools=[WEATHER_TOOL])
    add("content_part_arrays", [
        {"role": "system", "content": [{"type": "text", "text": "System part one."},
                                       {"type": "text", "text": "System part two."}]},
        {"role": "user", "content": [{"type": "text", "text": "第一部分"},
                                     {"type": "text", "text": "second part"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Single part answer."}]},
        {"role": "user", "content": []},
    ])
    add("special_tokens_in_content", [
        {"role": "user", "content": "Literal <|im_end|> and <think> and <tool_call> inside user text."},
    ])
    add("whitespace_and_crlf", [
        {"role": "user", "content": "  leading\r\n\ttabs\u3000ideographic space, trailing  \n\n"},
        {"role": "assistant", "content": "\n\nanswer with leading newlines\n"},
        {"role": "user", "content": "emoji 👩‍👩‍👧‍👦 flags 🇯🇵 combining e\u0301 nfc"},
    ])
    add("continue_final_message", [
        {"role": "user", "content": "Write a haiku about tea."},
        {"role": "assistant", "content": "Steam rises softly"},
    ], add_generation_prompt=False, continue_final_message=True)
    add("continue_final_message_trailing_space", [
        {"role": "user", "content": "Count to three."},
        {"role": "assistant", "content": "One, two, "},
    ], add_generation_prompt=False, continue_final_message=True)
    add("continue_final_message_with_reasoning", [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How", "reasoning_content": "Be friendly."},
    ], add_generation_prompt=False, continue_final_message=True)

    sample_tools = [SEARCH_TOOL, {"name": "ünïcode", "nested": {"z": 1, "a": [True, None, {"k": "v"}]}}]
    add("custom_tojson", [{"role": "user", "content": "x"}], tools=sample_tools, template=CUSTOM_TOJSON)
    add("custom_python_methods", [
        {"role": "system", "content": "  x,sys,tem y  "},
        {"role": "user", "content": "no,split here"},
        {"role": "assistant", "content": "  x,a,b,c,d y  "},
    ], kwargs={"custom_flag": 3}, template=CUSTOM_PY)
    add("custom_raise_exception", [
        {"role": "user", "content": "ok"},
        {"role": "system", "content": "not allowed"},
    ], template=CUSTOM_RAISE)
    add("custom_template_no_trailing_newline_kept", [{"role": "user", "content": "u"}],
        template="{{ messages[0].content }}\n")
    return out


def main():
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    rendered = []
    for case in cases():
        kwargs = dict(case["kwargs"])
        if case["template"] is not None:
            kwargs["chat_template"] = case["template"]
        try:
            prompt = tokenizer.apply_chat_template(
                prepare_messages(case["messages"]),
                tools=case["tools"],
                add_generation_prompt=case["add_generation_prompt"],
                continue_final_message=case["continue_final_message"],
                tokenize=False,
                **kwargs,
            )
        except Exception as exc:  # recorded: the Rust side must fail too
            print(f"{case['name']}: error {type(exc).__name__}: {exc}", file=sys.stderr)
            case["error"] = True
            case["prompt"] = None
            case["ids"] = None
            rendered.append(case)
            continue
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        case["error"] = False
        case["prompt"] = prompt
        case["ids"] = ids
        print(f"{case['name']}: {len(ids)} tokens", file=sys.stderr)
        rendered.append(case)

    import transformers

    doc = {
        "generator": "scripts/template_fixtures.py",
        "transformers": transformers.__version__,
        "special_tokens_map": tokenizer.special_tokens_map,
        "cases": rendered,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
