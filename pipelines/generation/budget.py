"""Stop generating once the answer holds what will be shown. With a sentence limit (the packaged
small model's answers keep one sentence, `Settings.answer_sentence_limit`) the citation checker
keeps the first supported sentences and trims the rest, so every token after a few more sentences
is made only to be thrown away while the reader waits. `SentenceBudget` stops the engine after the
limit plus `SLACK` sentences: room for the sentences the checker drops as unsupported or redundant
(on the sample set the kept sentence was always among the model's first three).

Sentences are counted as the checker counts claims (citations.split_sentences, 3+ words; a code
block is one piece) on the text as it will be shown, and only once the next piece has begun, so a
sentence is never cut inside."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from typing import Any

from pipelines.generation.base import Generation, Generator, batches
from pipelines.generation.citations import is_claim, sentence_spans
from pipelines.generation.cleanup import clean_answer, tidy_whitespace

SLACK = 2  # sentences past the limit: the checker's spares for the ones it drops


def claims_end(text: str, claims: int) -> int | None:
    """Where TEXT's CLAIMS-th complete claim ends; None while it has fewer. The last piece may
    still be growing, so it is never counted."""
    seen = 0
    for a, b in sentence_spans(text)[:-1]:
        seen += is_claim(text[a:b])
        if seen == claims:
            return b
    return None


class SentenceBudget:
    """GENERATOR, stopped after SENTENCES complete sentences (the engine is freed at once); the same
    `generate`/`stream` as every backend."""

    def __init__(self, generator: Generator, sentences: int) -> None:
        if sentences < 1:
            raise ValueError("sentences must be >= 1")
        self.generator = generator
        self.sentences = sentences
        self.name = generator.name
        self.batches = batches(generator)
        # Engines that report their token counts through `state` keep doing so through the budget.
        self._reports = "state" in inspect.signature(generator.stream).parameters

    def to_dict(self) -> dict[str, Any]:
        return {**self.generator.to_dict(), "stop_after_sentences": self.sentences}

    def count_tokens(self, text: str) -> int:
        return self.generator.count_tokens(text)

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        state: dict[str, Any] | None = None,
    ) -> Iterator[str]:
        extra = {"state": state} if self._reports and state is not None else {}
        pieces = self.generator.stream(
            messages, max_tokens=max_tokens, temperature=temperature, cancel=cancel, **extra
        )
        text = ""
        try:
            for piece in pieces:
                text += piece
                yield piece
                # Counted on the text as it will be shown (a small model wraps its lines as the
                # sources are wrapped); the piece that completes the last sentence may begin the
                # next one, which the answer's cleanup cuts (an unfinished last sentence).
                if claims_end(tidy_whitespace(text), self.sentences) is not None:
                    if state is not None:
                        state["finish"] = "stop"
                    return
        finally:
            pieces.close()  # type: ignore[attr-defined]  # every backend's stream is a generator

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Generation:
        state: dict[str, Any] = {}
        text = "".join(self.stream(messages, max_tokens=max_tokens, temperature=temperature, state=state))
        prompt = state.get("prompt_tokens") or sum(self.count_tokens(m["content"]) for m in messages)
        completion = state.get("completion_tokens") or self.count_tokens(text)
        return Generation(clean_answer(text), prompt, completion, self.name, state.get("finish", "stop"))


def with_sentence_budget(generator: Generator | None, answer_sentences: int | None) -> Generator | None:
    """GENERATOR for chat answers: stopped after ANSWER_SENTENCES + SLACK sentences when answers are
    cut to a sentence limit; as it is otherwise."""
    if generator is None or answer_sentences is None:
        return generator
    return SentenceBudget(generator, answer_sentences + SLACK)
