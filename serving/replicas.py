"""The replicas of a running Serve app, as Ray actors: list them, kill one, wait until Serve has
replaced it. For fault drills (tests/serving/test_faults.py, `benchmarks/load.py --kill-replica`);
run from a process connected to the app's Ray cluster."""

from __future__ import annotations

import time

REPLICA_PREFIX = "SERVE_REPLICA::"  # Serve names each replica actor SERVE_REPLICA::<app>#<deployment>#<id>
SERVE_NAMESPACE = "serve"


def replica_names(app: str, deployment: str) -> list[str]:
    """The live replica actors of APP's DEPLOYMENT."""
    import ray

    prefix = f"{REPLICA_PREFIX}{app}#{deployment}#"
    return sorted(
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    )


def kill_replica(app: str, deployment: str) -> str:
    """Kills one replica the way a crash would (no graceful shutdown); returns its actor name."""
    import ray

    names = replica_names(app, deployment)
    if not names:
        raise LookupError(f"no live replica of {deployment!r} in app {app!r}")
    ray.kill(ray.get_actor(names[0], namespace=SERVE_NAMESPACE), no_restart=True)
    return names[0]


def running(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    info = status.deployments.get(deployment) if status else None
    if info is None or info.status != "HEALTHY":
        return 0
    return int(info.replica_states.get("RUNNING", 0))


def wait_replaced(app: str, deployment: str, killed: str, replicas: int, timeout_s: float = 180.0) -> float:
    """Waits until Serve reports REPLICAS running replicas of DEPLOYMENT again, none of them KILLED;
    returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        names = replica_names(app, deployment)
        if killed not in names and len(names) == replicas and running(app, deployment) == replicas:
            return time.monotonic() - start
        time.sleep(0.25)
    raise TimeoutError(
        f"{deployment!r} of app {app!r} was not back to {replicas} replicas in {timeout_s:.0f} s"
    )
