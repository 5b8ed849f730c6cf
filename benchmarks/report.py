"""What every benchmark shares: the `--json` flag and its one JSON object, printed last.

The human-readable lines still print; with `--json` the final line is one object of the run's
figures (key names are part of the interface: ../shared/INTERFACE.md), so a script or CI can
`tail -1 | jq`."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object of the figures as the last line"
    )


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank), 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def emit(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """With --json, print the figures as one JSON object (the last line of the run)."""
    if getattr(args, "json", False):
        print(json.dumps(_clean(figures), sort_keys=False), flush=True)
