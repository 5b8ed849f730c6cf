"""The OpenAI chat-completions shape of the native chat: messages in, a completion or its chunks out."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.schemas import ChatResponse, OpenAIMessage


def split_messages(messages: Sequence[OpenAIMessage], max_history: int) -> tuple[str, list[dict[str, str]]]:
    """The question (the last user message) and the user and assistant turns before it."""
    last = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last is None:
        raise ValueError("messages must contain a user message")
    history = [
        {"role": m.role, "content": m.content}
        for m in messages[:last]
        if m.role in ("user", "assistant") and m.content
    ][-max_history:]
    return messages[last].content or "", history


@dataclass
class Completion:
    """One completion's identity; `body` answers whole, `chunks` turns the chat's SSE events into
    OpenAI's `data:` chunks."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def body(self, chat: ChatResponse) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": chat.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": chat.usage.prompt_tokens,
                "completion_tokens": chat.usage.completion_tokens,
                "total_tokens": chat.usage.prompt_tokens + chat.usage.completion_tokens,
            },
            "sources": [s.model_dump() for s in chat.sources],
            "degraded": chat.degraded,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    async def chunks(self, events: AsyncIterator[str]) -> AsyncIterator[str]:
        yield self._chunk({"role": "assistant", "content": ""})
        async for event in events:
            kind, _, data = event.partition("\ndata: ")
            payload = json.loads(data)
            if kind == "event: token":
                yield self._chunk({"content": payload["text"]})
            elif kind == "event: done":
                if payload["degraded"]:
                    yield self._chunk({"content": payload["answer"]})
                yield self._chunk({}, "stop", sources=payload["sources"], degraded=payload["degraded"])
            else:
                yield self._chunk({}, "error", error=payload["error"])
        yield "data: [DONE]\n\n"
