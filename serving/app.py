"""The Ray Serve graph: HTTP ingress (FastAPI) → searcher (which embeds each search batch itself, or
asks a query embedder deployment once per batch) → generator.

The searcher batches the searches that arrive while it is busy and embeds the batch's queries in
one forward pass (benchmarks/README.md has why). On one CPU machine every crossing between
processes costs more than it buys: `retriever: inline` and `query_embedder: inline` (the defaults)
keep both in the ingress replica, so a search crosses once (HTTP proxy → ingress). On a cluster
(serve-gpu.yaml) `deployment` gives each a deployment that scales apart, the embedder on GPUs.
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
    generator = bind(GeneratorService, portable)
    if settings.retriever == "deployment":
        return bind(ChatIngress, bind(RetrieverService, embedder, portable), generator, portable)
    return bind(ChatIngress, None, generator, portable, embedder)


def searcher_deployment(settings: Settings) -> str:
    """The deployment whose `user_config` sets search (retrieval parameters, batching)."""
    return "RetrieverService" if settings.retriever == "deployment" else "ChatIngress"


def app_builder(args: dict[str, Any]) -> serve.Application:
    """For Serve config files: `args` are Settings fields overriding the environment."""
    return build_app(Settings(**(args or {})))
