"""Extra Serve apps beside the main test service: same HTTP port, mounted at /NAME, holding no CPUs
(the main app holds them). Each costs tens of seconds on a small machine: start few."""

from __future__ import annotations

from typing import Any

from pipelines.settings import Settings
from tests.conftest import E2E_COLLECTION

DEPLOYMENTS = ("ChatIngress", "QueryEmbedder", "RetrieverService", "GeneratorService")


def start_extra_app(service: str, settings: Settings, name: str, **updates: Any) -> str:
    from serving import runner

    port = int(service.rsplit(":", 1)[1])
    app_settings = settings.model_copy(update={"default_collection": E2E_COLLECTION, "port": port, **updates})
    zero = {"ray_actor_options": {"num_cpus": 0}}
    return runner.start(app_settings, dict.fromkeys(DEPLOYMENTS, zero), name=name, route_prefix=f"/{name}")


def delete_extra_app(name: str) -> None:
    from ray import serve

    serve.delete(name)
