"""Start and stop the Serve application on the local Ray (or the cluster at RAY_ADDRESS)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from pipelines.runtime import ensure_ray, port_free
from pipelines.settings import Settings

APP_NAME = "ragline"


def start(
    settings: Settings,
    overrides: dict[str, dict[str, Any]] | None = None,
    name: str = APP_NAME,
    route_prefix: str = "/",
) -> str:
    """Deploy the app and wait until every replica is up; returns the base URL (with the prefix)."""
    from ray import serve

    from serving.app import build_app

    _check_port(settings)
    ensure_ray(settings)
    log_config = {"log_level": settings.serve_log_level}
    serve.start(http_options={"host": settings.host, "port": settings.port}, logging_config=log_config)
    serve.run(
        build_app(settings, overrides),
        name=name,
        route_prefix=route_prefix,
        blocking=False,
        logging_config=log_config,
    )
    url = f"http://{settings.host}:{settings.port}{route_prefix.rstrip('/')}"
    wait_healthy(url)
    return url


class PortInUseError(RuntimeError):
    pass


def _check_port(settings: Settings) -> None:
    """Refuse a port another process listens on (a `ragline up` beside a `ragline serve` or `demo`,
    both on 8000 by default) at once, in one line. Otherwise Serve's HAProxy failed to bind it
    ~10 s later with a traceback from `HAProxyManager.ready()`. A Serve already running in this Ray
    (another app beside it) and a cluster's own nodes are not checked."""
    import ray

    if settings.ray_address:
        return
    if ray.is_initialized() and any(  # Serve's controller (SERVE_CONTROLLER_NAME)
        a.get("name") == "SERVE_CONTROLLER_ACTOR" for a in ray.util.list_named_actors(all_namespaces=True)
    ):
        return
    if not port_free(settings.host, settings.port):
        raise PortInUseError(
            f"port {settings.port} is in use on {settings.host} (another `ragline serve` or `ragline up`?): "
            "stop it or set RAGLINE_PORT"
        )


def update_retrieval(
    settings: Settings,
    retrieval: dict[str, Any],
    overrides: dict[str, dict[str, Any]] | None = None,
    name: str = APP_NAME,
    route_prefix: str = "/",
) -> None:
    """Hot-apply retrieval parameters (mode, top_k, rrf_k, weights) to the running app."""
    from serving.app import searcher_deployment

    update_user_config(
        settings, {searcher_deployment(settings): {"retrieval": retrieval}}, overrides, name, route_prefix
    )


def update_user_config(
    settings: Settings,
    user_configs: dict[str, dict[str, Any]],
    overrides: dict[str, dict[str, Any]] | None = None,
    name: str = APP_NAME,
    route_prefix: str = "/",
) -> None:
    """An in-place Serve update of deployments' `user_config`: every live replica's `reconfigure`
    runs, nothing restarts. SETTINGS and OVERRIDES must be those the app was started with."""
    from ray import serve

    from serving.app import build_app

    merged = {k: dict(v) for k, v in (overrides or {}).items()}
    for deployment, cfg in user_configs.items():
        merged.setdefault(deployment, {})["user_config"] = cfg
    serve.run(
        build_app(settings, merged),
        name=name,
        route_prefix=route_prefix,
        blocking=False,
        logging_config={"log_level": settings.serve_log_level},
    )


def wait_healthy(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise TimeoutError(f"the service at {url} did not become healthy in {timeout_s:.0f} s: {last}")


def stop(shutdown_ray: bool = True) -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        if shutdown_ray:
            ray.shutdown()
