"""The Ray Serve graph: HTTP ingress (FastAPI) → retriever service (which embeds each search batch
itself, or asks a query embedder deployment once per batch) → generator.

A search is one call from the ingress: the retriever service batches the searches that arrive
while it is busy and embeds the batch's queries in one forward pass (benchmarks/README.md has why).
`query_embedder: inline` (the CPU default) keeps the embedder in the retriever replica, one crossing
between processes fewer; `deployment` (serve-gpu.yaml) gives it a deployment that scales apart.
Each deployment wraps one `pipelines` component; the same `Retriever` class answers here, in
evaluation and in notebooks. `build_app(settings)` composes the graph; `app_builder(args)` is the
entry point for Serve config files (`import_path: serving.app:app_builder`).
"""

from __future__ import annotations

from typing import Any

from ray import serve

from pipelines.settings import Settings
from serving.embedder import QueryEmbedder
from serving.generator import GeneratorService
from serving.ingress import ChatIngress
from serving.retriever import RetrieverService

__all__ = ["ChatIngress", "GeneratorService", "QueryEmbedder", "RetrieverService", "app_builder", "build_app"]


def build_app(settings: Settings, overrides: dict[str, dict[str, Any]] | None = None) -> serve.Application:
    """The graph; `overrides` maps a deployment name to its options (replicas, resources, autoscaling)."""
    portable = settings.portable()
    overrides = overrides or {}

    def bind(deployment: Any, *args: Any) -> Any:
        return deployment.options(**overrides.get(deployment.name, {})).bind(*args)

    embedder = bind(QueryEmbedder, portable) if settings.query_embedder == "deployment" else None
    return bind(
        ChatIngress,
        bind(RetrieverService, embedder, portable),
        bind(GeneratorService, portable),
        portable,
    )


def app_builder(args: dict[str, Any]) -> serve.Application:
    """For Serve config files: `args` are Settings fields overriding the environment."""
    return build_app(Settings(**(args or {})))
