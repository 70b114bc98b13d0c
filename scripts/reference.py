#!/usr/bin/env python3
"""Reference outputs from HF transformers (f32, CPU) for tealight's parity tests.

For two synthetic Qwen3 checkpoints (the embedded `tiny` model and `tiny-untied`, rebuilt
deterministically by synthetic_qwen3.py) and a set of chat prompts, records: the chat-template
prompt string and ids, a sample of the last-position logits, and a greedy continuation.
Writes tests/fixtures/reference.json. Needs torch + transformers; tests never do.

    python scripts/reference.py
"""

import json
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import synthetic_qwen3 as synth

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "reference.json"
GREEDY_TOKENS = 40
LOGITS_STRIDE = 37
TOP = 20

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "查询城市天气 (current weather for a city)",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 北京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

LONG_CONTEXT = " ".join(
    f"Section {i}: the quick brown fox jumps over the lazy dog while counting {i * 7} apples, "
    f"and the inventory clerk records item number {1000 + i} in the ledger."
    for i in range(12)
)

CASES = [
    {"name": "chinese_system_user",
     "messages": [{"role": "system", "content": "你是一个小助手"}, {"role": "user", "content": "你好"}]},
    {"name": "english_multi_turn",
     "messages": [
         {"role": "system", "content": "You are a concise assistant."},
         {"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "The capital of France is Paris."},
         {"role": "user", "content": "And of Italy? Answer in one word."},
     ]},
    {"name": "tools",
     "messages": [{"role": "user", "content": "What's the weather in Beijing today?"}],
     "tools": [WEATHER_TOOL]},
    {"name": "long_prompt",
     "messages": [
         {"role": "system", "content": "You summarise documents faithfully."},
         {"role": "user", "content": "Summarise this document:\n" + LONG_CONTEXT},
     ]},
]


@torch.no_grad()
def run_case(model, tok, case):
    prompt = tok.apply_chat_template(case["messages"], tools=case.get("tools"), add_generation_prompt=True,
                                     tokenize=False, **case.get("kwargs", {}))
    ids = tok(prompt, add_special_tokens=False).input_ids
    out = model(torch.tensor([ids]), use_cache=True)
    last = out.logits[0, -1].float()
    top = torch.topk(last, TOP)
    past = out.past_key_values
    greedy, nxt = [], int(torch.argmax(last))
    for _ in range(GREEDY_TOKENS):
        greedy.append(nxt)
        out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        nxt = int(torch.argmax(out.logits[0, -1]))
    return {
        "name": case["name"],
        "messages": case["messages"],
        "tools": case.get("tools"),
        "prompt": prompt,
        "prompt_ids": ids,
        "logits_stride": LOGITS_STRIDE,
        "logits_sample": [round(float(x), 6) for x in last[::LOGITS_STRIDE]],
        "top_ids": [int(i) for i in top.indices],
        "top_logits": [round(float(x), 6) for x in top.values],
        "greedy": greedy,
    }


def main():
    torch.manual_seed(0)
    fixtures = {"transformers": __import__("transformers").__version__, "torch": torch.__version__, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ("tiny", "tiny-untied"):
            # The embedded model's weights are not committed; the generator makes the same bytes.
            path = Path(tmp) / shape
            synth.write_checkpoint(shape, path)
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
            cases = [run_case(model, tok, c) for c in CASES]
            fixtures["models"].append({"shape": shape, "cases": cases})
            print(shape, [(c["name"], len(c["prompt_ids"])) for c in cases])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixtures, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
