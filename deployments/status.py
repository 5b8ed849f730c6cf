"""`ragline status`: what `ragline up` runs for this data dir, checked live."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deployments.processes import healthy
from deployments.state import Component, State, process_alive, state_path
from pipelines.settings import Settings


def _check(c: Component) -> dict[str, Any]:
    alive = process_alive(c.pid, c.started)
    return {
        "name": c.name,
        "url": c.url,
        "pid": c.pid,
        "alive": alive,
        "healthy": alive and healthy(c.health),
        "log": c.log,
    }


def status(settings: Settings) -> dict[str, Any]:
    """One JSON-able object: `running` (the `ragline up` process is alive), `healthy` (and every
    component answers its health check), and each component's URL, pid and health."""
    state = State.read(state_path(settings))
    if state is None:
        return {"running": False, "healthy": False, "data_dir": str(settings.root), "components": []}
    with ThreadPoolExecutor(max_workers=max(1, len(state.components))) as pool:
        components = list(pool.map(_check, state.components))
    running = process_alive(state.pid, state.started)
    return {
        "running": running,
        "healthy": running and state.phase == "running" and all(c["healthy"] for c in components),
        "phase": state.phase if running else "dead",
        "pid": state.pid,
        "started_at": state.started_at,
        "data_dir": state.data_dir,
        "components": components,
    }
