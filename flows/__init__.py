"""Prefect flows, one file per flow. Tasks are coarse (a stage), the work itself is in `pipelines`.

Importing this package configures the embedded stack (Prefect home, telemetry off) before Prefect
is imported, so `from flows.ingest import ingest_flow` works the same in a notebook or a worker.
"""

from pipelines.runtime import configure as _configure
from pipelines.settings import get_settings as _get_settings

_configure(_get_settings())
