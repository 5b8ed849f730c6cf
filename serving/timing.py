"""Request timings, in milliseconds as the responses report them."""

from __future__ import annotations

import time


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
