"""Process environment for the embedded stack, set before Prefect, Ray or MLflow are imported."""

from __future__ import annotations

import os

from pipelines.models import offline_env
from pipelines.settings import Settings


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
