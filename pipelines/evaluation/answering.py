"""An evaluation's answers, made as serving makes them (refused below the threshold without calling
the model, the same prompt, the citations checked) and scored offline (`answer_metrics`). A
generator that batches concurrent requests makes several answers ahead while they are checked and
scored in order; the embedder is used by the caller's thread only."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from pipelines.evaluation.answer_metrics import score_answer
from pipelines.generation import refusal
from pipelines.generation.base import Generation, Generator, batches
from pipelines.generation.citations import CitationChecker
from pipelines.generation.prompts import build_messages


@dataclass
class Ask:
    """One question to answer: its retrieved passages, its reference answers (if any) and the
    evidence it is refused below."""

    question: str
    hits: list[Any]
    reference: list[str] | None
    min_similarity: float | None


@dataclass
class _Job:
    used: list[Any]  # the passages the prompt holds
    result: Callable[[], tuple[Generation, float]]  # waits for the answer and its time in ms


class Answerer:
    """Answers ASKs with GENERATOR from their first TOP_K passages; CONCURRENCY at once when the
    generator batches concurrent requests (OpenVINO, vLLM, a server), else one after another."""

    def __init__(
        self,
        generator: Generator,
        embedder: Any,
        top_k: int,
        context_tokens: int = 600,
        max_new_tokens: int = 120,
        check_citations: bool = True,
        answer_sentences: int | None = None,
        concurrency: int = 4,
    ) -> None:
        if top_k < 1 or context_tokens < 1 or max_new_tokens < 1:
            raise ValueError("top_k, context_tokens and max_new_tokens must be >= 1")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.generator = generator
        self.embedder = embedder
        self.top_k = top_k
        self.context_tokens = context_tokens
        self.max_new_tokens = max_new_tokens
        self.check_citations = check_citations
        self.answer_sentences = answer_sentences
        self.concurrency = concurrency if batches(generator) else 1
        self.checker = CitationChecker(embedder, max_sentences=answer_sentences)  # serving's check

    def to_dict(self) -> dict[str, Any]:
        gen = self.generator.to_dict()
        return {
            "generator": gen.get("backend", "?"),
            "generator_model": gen.get("model", "?"),
            "context_tokens": self.context_tokens,
            "max_new_tokens": self.max_new_tokens,
            "check_citations": self.check_citations,
            "answer_sentences": self.answer_sentences or "all",
            "answer_concurrency": self.concurrency,
        }

    def answer(self, asks: Sequence[Ask]) -> Iterator[dict[str, Any]]:
        """Each ask's answer row, in order. Close the iterator to stop the answers not yet begun."""
        pool = ThreadPoolExecutor(self.concurrency, "ragline-answer") if self.concurrency > 1 else None
        try:
            jobs = [self._start(pool, ask) for ask in asks]
            for ask, job in zip(asks, jobs, strict=True):
                yield self._finish(ask, job)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _start(self, pool: ThreadPoolExecutor | None, ask: Ask) -> _Job | None:
        """The model's answer, begun on POOL (without one: made when it is waited for); None when
        the question is refused without calling the model."""
        if refusal.refuses(ask.hits, ask.min_similarity):
            return None
        messages, used = build_messages(
            ask.question, ask.hits[: self.top_k], self.generator.count_tokens, budget=self.context_tokens
        )
        if pool is None:
            return _Job(used, partial(self._generate, messages))
        return _Job(used, pool.submit(self._generate, messages).result)

    def _generate(self, messages: list[dict[str, str]]) -> tuple[Generation, float]:
        started = time.perf_counter()
        out = self.generator.generate(messages, max_tokens=self.max_new_tokens, temperature=0.0)
        return out, (time.perf_counter() - started) * 1000

    def _finish(self, ask: Ask, job: _Job | None) -> dict[str, Any]:
        if job is None:
            top = ask.hits[: self.top_k]
            passages = [h.text for h in top]
            scores = score_answer(
                self.embedder, ask.question, refusal.REFUSAL_ANSWER, passages, ask.reference
            )
            return {
                "answer": refusal.REFUSAL_ANSWER,
                "raw_answer": None,
                "repaired_citations": 0,
                **scores.to_dict(),
                "refused_without_model": True,
                "sources": [h.doc_id for h in top],
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "generation_ms": 0.0,
            }
        out, ms = job.result()
        passages = [h.text for h in job.used]
        answer, repaired = out.text, 0
        if self.check_citations:
            checked = self.checker.check(out.text, passages, ask.question, ask.min_similarity)
            answer, repaired = checked.text, checked.repaired
        scores = score_answer(self.embedder, ask.question, answer, passages, ask.reference)
        return {
            "answer": answer,
            "raw_answer": out.text,
            "repaired_citations": repaired,
            **scores.to_dict(),
            "refused_without_model": False,
            "sources": [h.doc_id for h in job.used],
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "generation_ms": round(ms, 1),
        }
