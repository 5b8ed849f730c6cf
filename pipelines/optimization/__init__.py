"""Optimization: make the collection's answers better and keep the best. `search` samples trials
from a `SearchSpace` (retrieval mode, fusion, top_k, chunking) with Optuna, each scored by the
evaluator and logged as a nested MLflow run; `variants` builds the chunking variants a trial may
ask for, each with its own tables. The winner is registered as the champion only if it beats the
incumbent on the held-out split."""

from pipelines.optimization.search import Candidate, SearchSpace, Trial, best, search
from pipelines.optimization.variants import Chunking, chunk_variant, variant_name, write_variant_chunks

__all__ = [
    "Candidate",
    "Chunking",
    "SearchSpace",
    "Trial",
    "best",
    "chunk_variant",
    "search",
    "variant_name",
    "write_variant_chunks",
]
