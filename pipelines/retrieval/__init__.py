"""Retrieval: a query becomes ranked passages. `query` says what a search is (the `Query`, its
filters, the `RetrievalConfig`, the `Hit`s it returns), `fusion` merges rankings, and `retriever`
holds the one `Retriever` that serving, evaluation and notebooks all call: vector, full-text or
hybrid search over a collection's active index table, with the champion's config when asked."""

from pipelines.retrieval.fusion import rrf_fuse
from pipelines.retrieval.query import (
    FILTERABLE,
    MODES,
    Embed,
    Hit,
    Mode,
    Query,
    RetrievalConfig,
    where_clause,
)
from pipelines.retrieval.retriever import Retriever

__all__ = [
    "FILTERABLE",
    "MODES",
    "Embed",
    "Hit",
    "Mode",
    "Query",
    "RetrievalConfig",
    "Retriever",
    "rrf_fuse",
    "where_clause",
]
