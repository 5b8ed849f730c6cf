"""What every generation backend shares: the `Generator` protocol, its result, its error, and the
sampling limits and stop sequences that all backends apply the same way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

MAX_TOKENS_CAP = 1024
# The prompt's own markers and the chat template's: a model that writes one is echoing, not answering.
# The first four are the ones an OpenAI-compatible API takes (it allows four); cleanup cuts the rest.
STOP = (
    "\nQuestion:",
    "</sources>",
    "<source ",
    "<|im_end|>",
    "\nSources:",
    "<sources>",
    "</source>",
    "<|im_start|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<start_of_turn>",
)


def clamp_sampling(max_tokens: int, temperature: float) -> tuple[int, float]:
    return max(1, min(int(max_tokens), MAX_TOKENS_CAP)), max(0.0, min(float(temperature), 2.0))


def cut_at_stop(text: str, stop: tuple[str, ...] = STOP) -> str:
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut].strip()


class StopScanner:
    """Cuts a token stream at the first stop sequence. Text that could be the start of one is held
    back until the next piece shows it is not, so a stop sequence never reaches the reader."""

    def __init__(self, stop: tuple[str, ...] = STOP) -> None:
        self.stop = stop
        self.text = ""
        self.sent = 0

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text now safe to send, and whether a stop sequence was reached."""
        self.text += piece
        # Held-back text is never sent, so a stop sequence can only start at or after `sent`.
        cut = min((i for s in self.stop if (i := self.text.find(s, self.sent)) >= 0), default=-1)
        if cut >= 0:
            out, self.sent = self.text[self.sent : cut], cut
            return out, True
        held = max((k for s in self.stop for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)
        end = max(self.sent, len(self.text) - held)
        out, self.sent = self.text[self.sent : end], end
        return out, False

    def flush(self) -> str:
        out, self.sent = self.text[self.sent :], len(self.text)
        return out


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str = "stop"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GenerationError(RuntimeError):
    """The generator failed; serving answers with the retrieved passages instead (degraded)."""


class Generator(Protocol):
    name: str

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Generation: ...

    def count_tokens(self, text: str) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Text pieces as they are made; stops soon after `cancel` is set (the client went away)."""
        ...


def batches(generator: Generator) -> bool:
    """Whether GENERATOR runs concurrent requests together (continuous batching, a server), so
    several answers at once take less time than one after another; the in-process transformers
    and onnxruntime backends take turns instead. An optional `batches` attribute says so."""
    return bool(getattr(generator, "batches", False))


class WholeAnswerStream:
    """For backends called here without token streaming: one piece, the whole answer."""

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        yield self.generate(messages, max_tokens=max_tokens, temperature=temperature).text  # type: ignore[attr-defined]
