"""Evaluation: an evaluation set through the same `Retriever` (and generator) that serving uses.

Documents are ranked by their best chunk (INTERFACE.md), so chunking variants compare fairly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from pipelines.evaluation.answering import Answerer, Ask
from pipelines.evaluation.evalsets import EvalSet
from pipelines.evaluation.metrics import KS, document_ranking, mean_scores, percentiles, retrieval_scores
from pipelines.generation import refusal
from pipelines.generation.base import Generator
from pipelines.generation.prompts import PROMPT_VERSION
from pipelines.retrieval.retriever import Retriever

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalOptions:
    depth: int = 10  # documents ranked per query (metrics at k = 1, 3, 5, 10)
    chunks: int = 40  # chunks retrieved to fill those documents (several chunks share a document)
    generate: bool = False
    max_answers: int | None = None  # CPU generation is slow: cap the answered queries
    context_tokens: int = 600
    max_new_tokens: int = 120
    check_citations: bool = True  # score the answer serving shows (citations checked and repaired)
    answer_sentences: int | None = None  # as serving: Settings.answer_sentence_limit
    # Refuse without calling the model below this evidence, as serving does (generation/refusal.py);
    # None: the retriever's (its champion's) threshold.
    min_similarity: float | None = None
    # Answers generated at once when the generator batches concurrent requests (OpenVINO, vLLM, a
    # server; others: 1). 43 sample answers on OpenVINO, 2 cores: 81 s instead of 106 s in all.
    concurrency: int = 4

    def __post_init__(self) -> None:
        if self.depth < max(KS) or self.chunks < self.depth:
            raise ValueError(f"depth must be >= {max(KS)} and chunks >= depth")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")


@dataclass
class EvalReport:
    metrics: dict[str, float]
    per_query: pl.DataFrame
    params: dict[str, Any]
    dataset: dict[str, Any]
    failures: pl.DataFrame = field(default_factory=pl.DataFrame)

    def metrics_by_k(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, value in self.metrics.items():
            base, _, k = name.partition("@")
            if k.isdigit():
                out.setdefault(base, {})[int(k)] = value
        return out


class Evaluator:
    """Scores a retriever (and optionally a generator) on an evaluation set."""

    def __init__(
        self,
        retriever: Retriever,
        embedder: Any,
        generator: Generator | None = None,
        options: EvalOptions | None = None,
        chunking: dict[str, int] | None = None,
    ) -> None:
        self.retriever = retriever
        self.embedder = embedder
        self.options = options or EvalOptions()
        if self.options.generate and generator is None:
            raise ValueError("generate=True needs a generator")
        o = self.options
        self.answerer = (
            Answerer(
                generator,
                embedder,
                retriever.config.top_k,
                o.context_tokens,
                o.max_new_tokens,
                o.check_citations,
                o.answer_sentences,
                o.concurrency,
            )
            if generator is not None
            else None
        )
        self.chunking = chunking or {}
        if embedder.info.path_hash != retriever.model.path_hash:
            raise ValueError(
                f"the index {retriever.table.name} was embedded with {retriever.model.name}; "
                f"the evaluator's embedder is {embedder.info.name}: they must match"
            )

    def to_dict(self) -> dict[str, Any]:
        """The whole RAG config, as MLflow params."""
        r = self.retriever
        cfg = asdict(r.config)
        params: dict[str, Any] = {
            "collection": r.collection,
            "index_table": r.table.name,
            "index_version": r.table_version,
            "embedding_model": r.model.name,
            "embedding_model_hash": r.model.path_hash[:12],
            **{f"chunk_{k}": v for k, v in self.chunking.items()},
            **{f"retrieval_{k}": v for k, v in cfg.items()},
            "prompt_version": PROMPT_VERSION,
            "eval_depth": self.options.depth,
            "eval_chunks": self.options.chunks,
            "generate": self.options.generate,
        }
        if self.answerer is not None and self.options.generate:
            params |= self.answerer.to_dict()
        return params

    def run(self, evalset: EvalSet, progress: Progress | None = None) -> EvalReport:
        queries = evalset.queries.to_dicts()
        rows: list[dict[str, Any]] = []
        rankings: dict[str, list[str]] = {}
        to_answer = self._answer_ids(evalset)
        # Retrieval first (the refusal thresholds need every question's evidence); hits are kept
        # only for the questions answered, so a large retrieval-only set holds rows, not passages.
        retrieved: list[tuple[dict[str, Any], list[Any]]] = []
        for q in queries:
            row, hits = self._retrieve(q)
            retrieved.append((row, hits if q["_id"] in to_answer else []))
        thresholds, source = self._refusal_thresholds(evalset, retrieved, to_answer)
        asks = {
            q["_id"]: Ask(
                q["text"], hits, evalset.answers.get(q["_id"]), thresholds.get(q["_id"], self._min_similarity)
            )
            for q, (_, hits) in zip(queries, retrieved, strict=True)
            if q["_id"] in to_answer
        }
        # Answers come in query order (made ahead by a batching generator); an error stops the rest.
        with closing(self._answers(list(asks.values()))) as answers:
            for n, (q, (row, _)) in enumerate(zip(queries, retrieved, strict=True), start=1):
                rankings[q["_id"]] = row["ranking"]
                row["relevant"] = sorted(evalset.qrels.get(q["_id"], {}))
                if q["_id"] in asks:
                    row |= next(answers)
                    row["refusal_threshold"] = asks[q["_id"]].min_similarity
                rows.append(row)
                if progress:
                    progress(n, len(queries))
        per_query_scores = retrieval_scores(evalset.qrels, rankings)
        for row in rows:
            for metric, values in per_query_scores.items():
                row[metric] = values.get(row["query_id"])
        frame = pl.DataFrame(rows, infer_schema_length=None)
        metrics = self._aggregate(frame, per_query_scores)
        params = self.to_dict() | ({"refusal_threshold": source} if to_answer else {})
        return EvalReport(metrics, frame, params, evalset.summary(), _failures(frame))

    def _answers(self, asks: list[Ask]) -> Iterator[dict[str, Any]]:
        if self.answerer is not None:
            yield from self.answerer.answer(asks)

    @property
    def _min_similarity(self) -> float | None:
        if self.options.min_similarity is not None:
            return self.options.min_similarity
        return self.retriever.min_similarity

    @staticmethod
    def _calibrated_refusal(frame: pl.DataFrame) -> float | None:
        """The refusal threshold this set supports: evidence of answerable vs unanswerable queries."""
        known = frame.filter(pl.col("evidence").is_not_null())
        judged = known["relevant"].list.len() > 0
        return refusal.calibrate(
            known.filter(judged)["evidence"].to_list(), known.filter(~judged)["evidence"].to_list()
        )

    def _refusal_thresholds(
        self, evalset: EvalSet, retrieved: list[tuple[dict[str, Any], list[Any]]], to_answer: set[str]
    ) -> tuple[dict[str, float | None], str]:
        """The threshold each answered question is refused below, and where it came from: the
        stored one (the champion's, learned, or set by hand) when there is one; else cross-fitted
        on this set's other questions, so a first evaluation already refuses as serving will once
        it has learned its threshold (generation/refusal.py)."""
        if not to_answer or self._min_similarity is not None:
            return {}, "stored" if self._min_similarity is not None else "none"
        evidence = {row["query_id"]: row["evidence"] for row, _ in retrieved}
        thresholds = refusal.cross_fitted(evidence, {q for q in evidence if evalset.qrels.get(q)})
        return thresholds, "cross-fitted" if any(t is not None for t in thresholds.values()) else "none"

    # --- steps ---------------------------------------------------------------------------------
    def _answer_ids(self, evalset: EvalSet) -> set[str]:
        if not self.options.generate:
            return set()
        ids = evalset.queries["_id"].to_list()
        unanswerable = [q for q in ids if not evalset.qrels.get(q)]
        answerable = [q for q in ids if evalset.qrels.get(q)]
        cap = self.options.max_answers or len(ids)
        # Keep some unanswerable questions in a capped run: refusal is measured on them.
        return set((unanswerable[: max(1, cap // 4)] + answerable)[:cap])

    def _retrieve(self, q: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        started = time.perf_counter()
        mode = self.retriever.config.mode
        vector = None if mode == "text" else self.embedder.embed([q["text"]])[0]
        hits = self.retriever.retrieve(q["text"], vector, top_k=self.options.chunks)
        ms = (time.perf_counter() - started) * 1000
        ranking = document_ranking(h.doc_id for h in hits)[: self.options.depth]
        row = {
            "query_id": q["_id"],
            "query": q["text"],
            "synthetic": bool(q.get("synthetic")),
            "ranking": ranking,
            "retrieval_ms": round(ms, 2),
            "evidence": refusal.evidence(hits),
        }
        return row, hits

    def _aggregate(self, frame: pl.DataFrame, per_query: dict[str, dict[str, float]]) -> dict[str, float]:
        metrics = mean_scores(per_query)
        metrics["queries"] = float(frame.height)
        metrics["judged_queries"] = float(len(next(iter(per_query.values()), {})))
        metrics |= percentiles(frame["retrieval_ms"].to_list(), "retrieval")
        threshold = self._calibrated_refusal(frame)
        if threshold is not None:
            metrics["refusal_min_similarity"] = threshold
        if "answer" not in frame.columns:
            return metrics
        answered = frame.filter(pl.col("answer").is_not_null())
        judged = answered.filter(pl.col("relevant").list.len() > 0)
        unjudged = answered.filter(pl.col("relevant").list.len() == 0)
        citing = answered.filter(pl.col("cites"))

        def mean(df: pl.DataFrame, col: str) -> float | None:
            values = [v for v in df[col].to_list() if v is not None] if col in df.columns else []
            return float(np.mean(values)) if values else None

        extra = {
            "answers": float(answered.height),
            "groundedness": mean(judged, "groundedness"),
            # of the answers that answer: a refusal has no claim to cite (refusal_accuracy scores it)
            "citation_rate": mean(answered.filter(~pl.col("refused")), "cites"),
            "citation_validity": mean(citing, "citation_validity"),
            "answer_relevance": mean(judged, "answer_relevance"),
            "false_refusal_rate": mean(judged, "refused"),
            "refused_without_model": mean(answered, "refused_without_model"),
            "refusal_accuracy": mean(unjudged, "refused"),  # unanswerable questions declined
            "reference_similarity": mean(answered, "reference_similarity"),
            "reference_f1": mean(answered, "reference_f1"),
            "exact_match": mean(answered, "exact_match"),
            "prompt_tokens_mean": mean(answered, "prompt_tokens"),
            "completion_tokens_mean": mean(answered, "completion_tokens"),
        }
        metrics |= {k: v for k, v in extra.items() if v is not None}
        metrics |= percentiles(answered["generation_ms"].to_list(), "generation")
        return metrics


def _failures(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per query and problem, with the reason in words: what a person reviews first."""
    reasons: list[dict[str, Any]] = []
    for row in frame.iter_rows(named=True):
        judged = bool(row["relevant"])
        problems = []
        if judged and not row.get("hit_rate@10"):
            problems.append("no relevant document in the top 10")
        if row.get("answer") is not None:
            if judged and row.get("refused"):
                problems.append("refused a question the corpus answers")
            if not judged and not row.get("refused"):
                problems.append("answered a question the corpus does not answer")
            if judged and (row.get("groundedness") or 0) < 0.5:
                problems.append("answer mostly not supported by its sources")
            if row.get("citation_validity") is not None and row["citation_validity"] < 1:
                problems.append("cites a source it was not shown")
        for p in problems:
            reasons.append(
                {
                    "query_id": row["query_id"],
                    "query": row["query"],
                    "reason": p,
                    "relevant": ", ".join(row["relevant"]),
                    "top_3": ", ".join(row["ranking"][:3]),
                    "answer": row.get("answer") or "",
                }
            )
    schema = ["query_id", "query", "reason", "relevant", "top_3", "answer"]
    return pl.DataFrame(reasons, schema=dict.fromkeys(schema, pl.String))
