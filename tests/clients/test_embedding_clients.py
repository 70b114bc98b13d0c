"""`/v1/embeddings` through the clients RAG pipelines use: the `openai` SDKs for Python (strict;
its default base64 encoding and float) and Node, LangChain's `OpenAIEmbeddings` and LiteLLM's
`embedding`, against a server reading the embedded model as an embedding model
(`--task embed`)."""

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from openai import OpenAI

from conftest import API_KEY, BINARY, MODEL, ROOT, replicas

# openai-node, installed from npm into a cache outside the clone (like the agent CLIs).
NODE_PREFIX = Path(os.environ.get("TEALIGHT_NODE_CLIENTS",
                                  Path.home() / ".cache/tealight/node-clients"))
OPENAI_NODE = "openai@6"

TEXTS = ["What is the capital of China?", "The capital of China is Beijing.", "Explain gravity"]


@pytest.fixture(scope="module")
def embedder():
    replica = replicas.start_replica(ROOT / "target", [
        "--api-key", API_KEY, "--kv-cache-memory", "64MiB", "--task", "embed",
    ], "embedding-clients-server", binary=BINARY)
    yield f"{replica.url}/v1"
    replica.stop()


@pytest.fixture(scope="module")
def floats(embedder):
    """The float embeddings of TEXTS from a raw request: what every client must reproduce."""
    r = requests.post(f"{embedder}/embeddings", json={"model": MODEL, "input": TEXTS},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    r.raise_for_status()
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    return [d["embedding"] for d in body["data"]]


def test_the_key_is_required(embedder):
    r = requests.post(f"{embedder}/embeddings", json={"input": "x"}, timeout=30)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "AuthenticationError"


def close(a, b, tol=1e-6):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def test_openai_sdk_base64_default_and_float(embedder, floats):
    # The SDK asks for base64 unless told otherwise and decodes it after validation, so its
    # strict mode cannot read a base64 answer from any server: the default client reads it.
    default = OpenAI(base_url=embedder, api_key=API_KEY).embeddings.create(model=MODEL, input=TEXTS)
    assert all(close(d.embedding, f) for d, f in zip(default.data, floats, strict=True))
    assert default.usage.prompt_tokens == default.usage.total_tokens > len(TEXTS)
    strict = OpenAI(base_url=embedder, api_key=API_KEY, _strict_response_validation=True)
    as_float = strict.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float")
    assert close(as_float.data[0].embedding, floats[0])
    assert math.isclose(sum(x * x for x in floats[0]), 1.0, rel_tol=1e-5)
    short = strict.embeddings.create(model=MODEL, input=TEXTS[0], dimensions=32,
                                     encoding_format="float")
    assert len(short.data[0].embedding) == 32
    assert math.isclose(sum(x * x for x in short.data[0].embedding), 1.0, rel_tol=1e-5)


def test_langchain_openai_embeddings(embedder, floats):
    from langchain_openai import OpenAIEmbeddings

    # Servers other than OpenAI's take text, not tiktoken ids (which would need a download).
    emb = OpenAIEmbeddings(model=MODEL, base_url=embedder, api_key=API_KEY,
                           check_embedding_ctx_length=False)
    docs = emb.embed_documents(TEXTS)
    assert all(close(d, f) for d, f in zip(docs, floats, strict=True))
    assert close(emb.embed_query(TEXTS[2]), floats[2])


def test_litellm_embedding(embedder, floats):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    out = litellm.embedding(model=f"openai/{MODEL}", input=TEXTS, api_base=embedder,
                            api_key=API_KEY)
    assert all(close(d["embedding"], f) for d, f in zip(out.data, floats, strict=True))


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs node and npm")
def test_openai_node_sdk(embedder, floats):
    if not (NODE_PREFIX / "node_modules/openai").is_dir():
        NODE_PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund",
                        "--loglevel=error", OPENAI_NODE], check=True, capture_output=True)
    script = ROOT / "tests/clients/node/embeddings.cjs"
    out = subprocess.run(["node", str(script), str(NODE_PREFIX), embedder, API_KEY, MODEL, *TEXTS],
                         check=True, capture_output=True, text=True, timeout=120)
    got = json.loads(out.stdout)
    for form in ["default", "float"]:
        assert all(close(v, f) for v, f in zip(got[form], floats, strict=True)), form
    assert got["prompt_tokens"] > len(TEXTS)
