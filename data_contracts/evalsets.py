"""The evaluation-set contract: queries and qrels are validated like any other input; rows that
break it are left out of the evaluation, counted, and reported with their reasons."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from data_contracts.suites import eval_qrels_suite, eval_queries_suite
from data_contracts.validate import validate


@dataclass
class EvalSetCheck:
    queries: pl.DataFrame
    qrels: pl.DataFrame
    rejected: pl.DataFrame  # table, row, reason

    @property
    def counts(self) -> dict[str, int]:
        return {
            "queries": self.queries.height,
            "qrels": self.qrels.height,
            "rejected_queries": self.rejected.filter(pl.col("table") == "queries").height,
            "rejected_qrels": self.rejected.filter(pl.col("table") == "qrels").height,
        }


def check_evalset(queries: pl.DataFrame, qrels: pl.DataFrame, document_ids: list[str]) -> EvalSetCheck:
    """DOCUMENT_IDS: what the qrels may name (the collection's documents, which retrieval can return)."""
    q = validate(queries, eval_queries_suite(), key="_id")
    r = validate(qrels, eval_qrels_suite(q.valid["_id"].to_list(), document_ids), key="query-id")
    rejected = pl.concat(
        [
            q.rejected.select(
                pl.lit("queries").alias("table"),
                pl.col("_id").cast(pl.String).fill_null("").alias("row"),
                "reason",
            ),
            r.rejected.select(
                pl.lit("qrels").alias("table"),
                pl.concat_str(
                    [pl.col("query-id").fill_null(""), pl.col("corpus-id").fill_null("")], separator=" → "
                ).alias("row"),
                "reason",
            ),
        ]
    )
    if q.valid.is_empty():
        raise ValueError(f"the evaluation set has no valid query ({q.rejected.height} rejected)")
    return EvalSetCheck(q.valid, r.valid, rejected)
