"""Evaluation: how good are the answers? `evalsets` reads evaluation sets in the BEIR layout (and
writes a starter set from a collection), `metrics` scores rankings (nDCG, recall, MRR through trec_eval),
`answer_metrics` scores answers (groundedness, citations, refusals, reference F1), `answering` makes
them as serving does (several at once on a batching engine), `evaluator` runs a set through the same
retriever and generator that serving uses, and `tracking` logs the report to
MLflow and reads and registers the collection's champion."""

from pipelines.evaluation.evalsets import EvalSet, EvalSetError
from pipelines.evaluation.evaluator import EvalOptions, EvalReport, Evaluator

__all__ = ["EvalOptions", "EvalReport", "EvalSet", "EvalSetError", "Evaluator"]
