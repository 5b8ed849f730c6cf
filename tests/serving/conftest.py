"""A second Serve app for the operations tests, beside the main one on the same HTTP port: tracing on,
the query embedder and the retriever as deployments of their own (serve-gpu.yaml's graph; the main
app searches and embeds inside its ingress), and two replicas of the embedder and the retriever,
so that killing one leaves one to answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipelines.settings import Settings
from tests.conftest import E2E_COLLECTION

OPS_APP = "ops"


@pytest.fixture(scope="session")
def ops_service(service: str, settings: Settings) -> Iterator[str]:
    from ray import serve

    from serving import runner

    port = int(service.rsplit(":", 1)[1])
    app_settings = settings.model_copy(
        # the deployment graph of serve-gpu.yaml: a QueryEmbedder of its own to kill
        update={
            "default_collection": E2E_COLLECTION,
            "port": port,
            "trace_requests": True,
            "query_embedder": "deployment",
            "retriever": "deployment",
        }
    )
    zero = {"ray_actor_options": {"num_cpus": 0}}  # the main app holds the CPUs
    two = {**zero, "autoscaling_config": {"min_replicas": 2, "max_replicas": 2}}
    overrides = {"ChatIngress": zero, "GeneratorService": zero, "QueryEmbedder": two, "RetrieverService": two}
    yield runner.start(app_settings, overrides, name=OPS_APP, route_prefix=f"/{OPS_APP}")
    serve.delete(OPS_APP)
