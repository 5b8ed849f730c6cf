"""Data contracts: one Great Expectations suite per table, as code, and the validate-and-quarantine
step that sends every failing row to the collection's quarantine table with its reasons."""

from data_contracts.evalsets import EvalSetCheck, check_evalset
from data_contracts.suites import (
    chunks_suite,
    documents_suite,
    eval_qrels_suite,
    eval_queries_suite,
    index_rows_suite,
)
from data_contracts.validate import ContractResult, check_index_rows, validate

__all__ = [
    "ContractResult",
    "EvalSetCheck",
    "check_evalset",
    "check_index_rows",
    "chunks_suite",
    "documents_suite",
    "eval_qrels_suite",
    "eval_queries_suite",
    "index_rows_suite",
    "validate",
]
