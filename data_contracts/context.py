"""One ephemeral Great Expectations context per process (nothing written to disk)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import great_expectations as gx


@lru_cache(maxsize=1)
def gx_context() -> Any:
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm bars on stderr
    return ctx
