"""The two deployment graphs: on one CPU machine the ingress searches and embeds itself (a search
crosses between processes once); serve-gpu.yaml's graph gives the retriever and the query embedder
deployments of their own. Both answer the same search the same way."""

import httpx
from ray import serve

from serving.runner import APP_NAME
from tests.conftest import E2E_COLLECTION
from tests.serving.conftest import OPS_APP


def test_the_cpu_graph_searches_in_the_ingress_and_the_gpu_graph_across_deployments(
    service: str, ops_service: str
) -> None:
    apps = serve.status().applications
    assert set(apps[APP_NAME].deployments) == {"ChatIngress", "GeneratorService"}
    assert set(apps[OPS_APP].deployments) == {
        "ChatIngress",
        "QueryEmbedder",
        "RetrieverService",
        "GeneratorService",
    }

    body = {"query": "How do lighthouse keepers work at night?", "collection": E2E_COLLECTION, "top_k": 4}
    inline, split = (httpx.post(f"{url}/v1/search", json=body, timeout=60) for url in (service, ops_service))
    assert inline.status_code == split.status_code == 200, (inline.text, split.text)
    ids = [[r["id"] for r in resp.json()["results"]] for resp in (inline, split)]
    assert ids[0] and ids[0] == ids[1]
    # Each graph times its own query embedding: in the ingress, or one call to the QueryEmbedder.
    assert all(resp.json()["timings"]["embed_ms"] > 0 for resp in (inline, split))
