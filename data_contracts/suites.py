"""The expectation suites, one per table. Each expectation's `meta.reason` is the sentence a
person reads in the quarantine table."""

from __future__ import annotations

from collections.abc import Iterable

import great_expectations as gx
from great_expectations import expectations as gxe

from data_contracts.context import gx_context
from pipelines.ingest.parsers import BINARY_MIME_TYPES, TEXT_MIME_TYPES

# Control characters; the form feed (\x0c) is allowed: parsers use it as the PDF page break.
CONTROL_CHARS = r"[\x00-\x08\x0b\x0e-\x1f\x7f]"


def _suite(name: str, expectations: Iterable[gxe.Expectation]) -> gx.ExpectationSuite:
    ctx = gx_context()  # GX needs a live context to build a suite
    # The last run's suite of this name goes first: while it is stored, each add_expectation below
    # re-serialises it (with a chunks suite's 100,000 document ids, 2.4 s of an unchanged re-ingest).
    if any(s.name == name for s in ctx.suites.all()):
        ctx.suites.delete(name)
    suite = gx.ExpectationSuite(name=name)
    for e in expectations:
        suite.add_expectation(e)
    return ctx.suites.add(suite)


def documents_suite(max_chars: int) -> gx.ExpectationSuite:
    return _suite(
        "documents",
        [
            gxe.ExpectColumnValuesToNotBeNull(column="id", meta={"reason": "document has no id"}),
            gxe.ExpectColumnValuesToBeUnique(
                column="id", meta={"reason": "duplicate document id in this run"}
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="text", meta={"reason": "document has no text"}),
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text",
                min_value=1,
                max_value=max_chars,
                meta={"reason": f"text is empty or longer than {max_chars} characters"},
            ),
            gxe.ExpectColumnValuesToNotMatchRegex(
                column="text", regex=CONTROL_CHARS, meta={"reason": "text contains control characters"}
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="mime_type",
                value_set=sorted(TEXT_MIME_TYPES | BINARY_MIME_TYPES),
                meta={"reason": "mime type not allowed"},
            ),
        ],
    )


def chunks_suite(min_tokens: int, max_tokens: int, document_ids: list[str]) -> gx.ExpectationSuite:
    return _suite(
        "chunks",
        [
            gxe.ExpectColumnValuesToNotBeNull(column="id", meta={"reason": "chunk has no id"}),
            gxe.ExpectColumnValuesToBeUnique(column="id", meta={"reason": "duplicate chunk id"}),
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=1, meta={"reason": "chunk text is empty"}
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="token_count",
                min_value=min_tokens,
                max_value=max_tokens,
                meta={"reason": f"chunk has fewer than {min_tokens} or more than {max_tokens} tokens"},
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="doc_id", value_set=document_ids, meta={"reason": "chunk's document does not exist"}
            ),
        ],
    )


def index_rows_suite(norm_tolerance: float = 0.02) -> gx.ExpectationSuite:
    """Rows about to enter an index table: `norm` is the vector's L2 norm (vectors are normalised)."""
    return _suite(
        "index_rows",
        [
            gxe.ExpectColumnValuesToNotBeNull(column="id", meta={"reason": "index row has no id"}),
            gxe.ExpectColumnValuesToBeUnique(column="id", meta={"reason": "duplicate index row id"}),
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=1, meta={"reason": "index row has empty text"}
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="norm", meta={"reason": "vector contains NaN"}),
            gxe.ExpectColumnValuesToBeBetween(
                column="norm",
                min_value=1 - norm_tolerance,
                max_value=1 + norm_tolerance,
                meta={"reason": "vector is not unit length (zero or unnormalised embedding)"},
            ),
        ],
    )


def eval_queries_suite() -> gx.ExpectationSuite:
    return _suite(
        "eval_queries",
        [
            gxe.ExpectColumnValuesToNotBeNull(column="_id", meta={"reason": "query has no _id"}),
            gxe.ExpectColumnValuesToBeUnique(column="_id", meta={"reason": "duplicate query _id"}),
            gxe.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=1, max_value=4000, meta={"reason": "query text empty or too long"}
            ),
        ],
    )


def eval_qrels_suite(query_ids: list[str], document_ids: list[str]) -> gx.ExpectationSuite:
    return _suite(
        "eval_qrels",
        [
            gxe.ExpectColumnValuesToBeInSet(
                column="query-id", value_set=query_ids, meta={"reason": "qrel names an unknown query"}
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="corpus-id",
                value_set=document_ids,
                meta={"reason": "qrel names a document not in the corpus"},
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="score", min_value=0, meta={"reason": "relevance score must be >= 0"}
            ),
        ],
    )
