"""What every generation backend shares: the `Generator` protocol, its result, its error, and the
sampling limits and stop sequences that all backends apply the same way."""

from __future__ import annotations

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
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Iterator[str]: ...


class WholeAnswerStream:
    """For backends called here without token streaming: one piece, the whole answer."""

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Iterator[str]:
        yield self.generate(messages, max_tokens=max_tokens, temperature=temperature).text  # type: ignore[attr-defined]
