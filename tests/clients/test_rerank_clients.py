"""`/v1/rerank` and `/v2/rerank` through Cohere's SDK (v1 and v2 clients), against a server
reading the embedded model as a reranker (`--task score`); the scores must equal `/v1/score`'s
(to 1e-5: a later request reads the shared prompt prefix from the cache, in other chunks)."""

import cohere
import pytest
import requests

from conftest import API_KEY, BINARY, MODEL, ROOT, replicas

QUERY = "What is the capital of China?"
DOCUMENTS = ["The capital of China is Beijing.", "Gravity pulls.", "你好，世界"]


@pytest.fixture(scope="module")
def reranker():
    replica = replicas.start_replica(ROOT / "target", [
        "--api-key", API_KEY, "--kv-cache-memory", "64MiB", "--task", "score",
    ], "rerank-clients-server", binary=BINARY)
    yield replica.url
    replica.stop()


@pytest.fixture(scope="module")
def scores(reranker):
    r = requests.post(f"{reranker}/v1/score", json={"text_1": QUERY, "text_2": DOCUMENTS},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    r.raise_for_status()
    return [d["score"] for d in r.json()["data"]]


def test_the_key_is_required(reranker):
    for path in ["/v1/rerank", "/rerank", "/v2/rerank", "/v1/score", "/score"]:
        r = requests.post(f"{reranker}{path}", json={"query": "q", "documents": ["d"]}, timeout=30)
        assert r.status_code == 401, path


def test_cohere_v2_client(reranker, scores):
    client = cohere.ClientV2(api_key=API_KEY, base_url=reranker)
    out = client.rerank(model=MODEL, query=QUERY, documents=DOCUMENTS, top_n=2)
    assert len(out.results) == 2
    best = sorted(range(len(scores)), key=lambda i: -scores[i])[:2]
    assert [r.index for r in out.results] == best
    for r in out.results:
        assert r.relevance_score == pytest.approx(scores[r.index], abs=1e-5)


def test_cohere_v1_client_with_documents(reranker, scores):
    client = cohere.Client(api_key=API_KEY, base_url=reranker)
    out = client.rerank(model=MODEL, query=QUERY, documents=DOCUMENTS, return_documents=True)
    assert sorted(r.index for r in out.results) == [0, 1, 2]
    for r in out.results:
        assert r.document.text == DOCUMENTS[r.index]
        assert r.relevance_score == pytest.approx(scores[r.index], abs=1e-5)
