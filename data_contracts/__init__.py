"""Data contracts: one Great Expectations suite per table, as code, and the validate-and-quarantine
step that sends every failing row to the collection's quarantine table with its reasons."""

from data_contracts.suites import chunks_suite, documents_suite
from data_contracts.validate import ContractResult, validate

__all__ = ["ContractResult", "chunks_suite", "documents_suite", "validate"]
