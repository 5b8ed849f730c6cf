"""Validate a table against its suite; split it into valid rows and quarantined rows with reasons."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import numpy as np
import polars as pl
import pyarrow as pa

from data_contracts.context import gx_context

log = logging.getLogger(__name__)
EXAMPLES = 3


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected: int
    reason: str
    examples: list[str] = field(default_factory=list)


@dataclass
class ContractResult:
    suite: str
    valid: pl.DataFrame
    rejected: pl.DataFrame  # the rejected rows + `reason` and `failed_expectations` columns
    evaluated: int
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return self.rejected.is_empty()


def _batch_definition(name: str) -> Any:
    ctx = gx_context()
    try:
        ds = ctx.data_sources.get("ragline")
    except (KeyError, ValueError):
        ds = ctx.data_sources.add_pandas("ragline")
    try:
        asset = ds.get_asset(name)
    except LookupError:
        asset = ds.add_dataframe_asset(name)
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, ValueError):
        return asset.add_batch_definition_whole_dataframe("whole")


def validate(df: pl.DataFrame, suite: gx.ExpectationSuite, key: str = "id") -> ContractResult:
    """Every row ends in exactly one of `valid` and `rejected`.

    For a uniqueness expectation the first occurrence of a key is kept and later ones rejected.
    A suite that evaluates fewer expectations than it declares is an error, not a pass
    (a misconfigured expectation can otherwise "succeed" with nothing run).
    """
    declared = len(suite.expectations)
    if df.is_empty():
        return ContractResult(suite.name, df, _with_reasons(df, {}), declared, [])
    pdf = df.to_pandas()
    batch = _batch_definition(suite.name).get_batch(batch_parameters={"dataframe": pdf})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    evaluated = int(result.statistics["evaluated_expectations"])
    if evaluated != declared:
        raise RuntimeError(f"suite {suite.name!r} evaluated {evaluated} of {declared} expectations")
    first_of_key = set(df.with_row_index("_i").unique(subset=[key], keep="first", maintain_order=True)["_i"])
    reasons: dict[int, list[tuple[str, str]]] = {}
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        if r.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation {cfg.type} failed to run: {r.exception_info}")
        reason = (cfg.meta or {}).get("reason") or cfg.type
        rows = [int(i) for i in (r.result.get("unexpected_index_list") or [])]
        if cfg.type == "expect_column_values_to_be_unique" and cfg.kwargs.get("column") == key:
            rows = [i for i in rows if i not in first_of_key]
        for i in rows:
            reasons.setdefault(i, []).append((cfg.type, reason))
        examples = [repr(v)[:120] for v in (r.result.get("partial_unexpected_list") or [])[:EXAMPLES]]
        outcomes.append(
            ExpectationOutcome(
                cfg.type,
                cfg.kwargs.get("column"),
                bool(r.success),
                int(r.result.get("unexpected_count") or 0),
                reason,
                examples,
            )
        )
    bad = sorted(reasons)
    mask = pl.Series("bad", [False] * df.height)
    if bad:
        mask = mask.scatter(bad, True)
    rejected = _with_reasons(df.filter(mask), {n: reasons[i] for n, i in enumerate(bad)})
    return ContractResult(suite.name, df.filter(~mask), rejected, evaluated, outcomes)


def _with_reasons(df: pl.DataFrame, reasons: dict[int, list[tuple[str, str]]]) -> pl.DataFrame:
    return df.with_columns(
        pl.Series(
            "reason",
            ["; ".join(dict.fromkeys(r for _, r in reasons.get(i, []))) for i in range(df.height)],
            dtype=pl.String,
        ),
        pl.Series(
            "failed_expectations",
            [[t for t, _ in reasons.get(i, [])] for i in range(df.height)],
            dtype=pl.List(pl.String),
        ),
    )


def check_index_rows(batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The index-rows contract as an embedding batch check: (rows to write, rejected rows with
    `reason` and `failed_expectations`)."""
    from data_contracts.suites import index_rows_suite

    vectors = batch.column("vector").combine_chunks()
    dim = vectors.type.list_size
    flat = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    frame = pl.DataFrame(
        {
            "id": batch.column("id").to_pylist(),
            "text": batch.column("text").to_pylist(),
            "norm": np.linalg.norm(flat, axis=1).astype(np.float64),
        }
    )
    frame = frame.with_columns(pl.col("norm").fill_nan(None))  # NaN vectors fail as null norms
    result = validate(frame.with_row_index("_row"), index_rows_suite())
    bad_rows = result.rejected["_row"].to_list()
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[bad_rows] = False
    rejected = batch.filter(pa.array(~keep))
    rejected = rejected.append_column("reason", pa.array(result.rejected["reason"].to_list(), pa.string()))
    rejected = rejected.append_column(
        "failed_expectations",
        pa.array(result.rejected["failed_expectations"].to_list(), pa.list_(pa.string())),
    )
    return batch.filter(pa.array(keep)), rejected
