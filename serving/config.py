"""Read a Ray Serve config file (the standard format `serve run` reads) for `ragline serve --config`:
HTTP options, the app's Settings overrides (`args`) and per-deployment options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEPLOYMENT_OPTIONS = frozenset(
    {
        "num_replicas",
        "autoscaling_config",
        "ray_actor_options",
        "max_ongoing_requests",
        "user_config",
        "health_check_period_s",
        "health_check_timeout_s",
        "graceful_shutdown_timeout_s",
    }
)


@dataclass
class ServeConfig:
    host: str | None = None
    port: int | None = None
    args: dict[str, Any] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_serve_config(path: Path) -> ServeConfig:
    raw = yaml.safe_load(path.read_text()) or {}
    apps = raw.get("applications") or []
    if len(apps) != 1 or apps[0].get("import_path") != "serving.app:app_builder":
        raise ValueError(f"{path}: expected one application with import_path serving.app:app_builder")
    app = apps[0]
    overrides: dict[str, dict[str, Any]] = {}
    for d in app.get("deployments") or []:
        unknown = set(d) - DEPLOYMENT_OPTIONS - {"name"}
        if unknown:
            raise ValueError(f"{path}: deployment {d.get('name')!r} has unknown options {sorted(unknown)}")
        overrides[d["name"]] = {k: v for k, v in d.items() if k != "name"}
    http = raw.get("http_options") or {}
    return ServeConfig(http.get("host"), http.get("port"), dict(app.get("args") or {}), overrides)
