"""The generator deployment: builds the numbered-sources prompt with the model's own tokenizer and
generates (or streams) the answer with the backend the settings name."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from pipelines.generation import GenerationError, clean_answer, make_generator
from pipelines.generation.budget import with_sentence_budget
from pipelines.generation.citations import CitationChecker
from pipelines.generation.prompts import build_messages
from pipelines.index import Embedder
from pipelines.retrieval import Hit
from pipelines.settings import Settings


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=4)
class GeneratorService:
    """Builds the numbered-sources prompt with the model's own tokenizer and generates the answer."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        self.generator = with_sentence_budget(
            make_generator(self.settings, threads=2), self.settings.answer_sentence_limit
        )
        # Answers are checked here, where the passages are: one small encoder per replica.
        self.checker = (
            CitationChecker(
                Embedder(self.settings.embedding_model, device=self.settings.embed_device, threads=1),
                max_sentences=self.settings.answer_sentence_limit,
            )
            if self.generator is not None
            else None
        )

    def describe(self) -> dict[str, Any]:
        return self.generator.to_dict() if self.generator else {"backend": "none"}

    def _prompt(
        self, question: str, hits: list[dict[str, Any]], history: list[dict[str, str]]
    ) -> tuple[list[dict[str, str]], int]:
        if self.generator is None:
            raise GenerationError("generation is turned off (RAGLINE_GENERATOR=none)")
        messages, used = build_messages(
            question,
            [Hit(**h) for h in hits],
            self.generator.count_tokens,
            budget=self.settings.context_tokens,
            history=history,
        )
        return messages, len(used)

    def _sampling(self, max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        return {
            "max_tokens": max_tokens or self.settings.max_new_tokens,
            "temperature": self.settings.temperature if temperature is None else temperature,
        }

    async def answer(
        self,
        question: str,
        hits: list[dict[str, Any]],
        history: list[dict[str, str]],
        max_tokens: int | None,
        temperature: float | None,
        min_similarity: float | None = None,
    ) -> dict[str, Any]:
        # Async, the engine's work in a thread: the replica's event loop stays free for other
        # requests (streams interleave with it) and for Serve's health checks.
        messages, used = self._prompt(question, hits, history)
        assert self.generator is not None
        out = await asyncio.to_thread(
            self.generator.generate, messages, **self._sampling(max_tokens, temperature)
        )
        checked = await asyncio.to_thread(self._check, out.text, hits[:used], question, min_similarity)
        return {**out.to_dict(), "used": used, **checked}

    async def stream(
        self,
        question: str,
        hits: list[dict[str, Any]],
        history: list[dict[str, str]],
        max_tokens: int | None,
        temperature: float | None,
        min_similarity: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yields {"text": piece}... then {"done": {usage, model, used}}. When the caller cancels
        (a client gone, the ingress's timeout), Serve cancels this task and the engine stops at its
        next token."""
        messages, used = self._prompt(question, hits, history)
        assert self.generator is not None
        pieces: list[str] = []
        cancel = threading.Event()
        tokens = self.generator.stream(messages, **self._sampling(max_tokens, temperature), cancel=cancel)
        try:
            while (piece := await asyncio.to_thread(next, tokens, None)) is not None:
                pieces.append(piece)
                yield {"text": piece}
        finally:
            cancel.set()
        prompt_tokens = sum(self.generator.count_tokens(m["content"]) for m in messages)
        yield {
            "done": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": self.generator.count_tokens("".join(pieces)),
                "model": self.generator.name,
                "used": used,
                **await asyncio.to_thread(
                    self._check, clean_answer("".join(pieces)), hits[:used], question, min_similarity
                ),
            }
        }

    def _check(
        self, answer: str, hits: list[dict[str, Any]], question: str, min_similarity: float | None
    ) -> dict[str, Any]:
        """{"text": the checked answer, "grounded", "citations", "refused"}
        (pipelines/generation/citations.py)."""
        assert self.checker is not None
        return self.checker.check(answer, [h["text"] for h in hits], question, min_similarity).to_dict()
