"""The OpenAI chat-completions shape, without a server: messages in, the question and history out;
the native chat's SSE events out as OpenAI chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from serving.openai_compat import Completion, split_messages
from serving.schemas import OpenAIMessage


def _messages(*turns: tuple[str, str | None]) -> list[OpenAIMessage]:
    return [OpenAIMessage(role=role, content=content) for role, content in turns]  # type: ignore[arg-type]


def test_the_last_user_message_is_the_question_and_earlier_turns_the_history() -> None:
    question, history = split_messages(
        _messages(
            ("system", "be brief"),
            ("user", "What is a Fresnel lens?"),
            ("assistant", None),  # a tool-calling turn: no content, not history
            ("assistant", "A lens of concentric rings [1]."),
            ("user", "Who invented it?"),
            ("tool", "ignored"),
        ),
        max_history=8,
    )
    assert question == "Who invented it?"
    assert history == [
        {"role": "user", "content": "What is a Fresnel lens?"},
        {"role": "assistant", "content": "A lens of concentric rings [1]."},
    ]
    _, short = split_messages(_messages(("user", "a"), ("assistant", "b"), ("user", "c")), max_history=1)
    assert short == [{"role": "assistant", "content": "b"}]
    with pytest.raises(ValueError, match="must contain a user message"):
        split_messages(_messages(("system", "only instructions")), max_history=8)


def test_chat_events_become_openai_chunks_ending_in_done() -> None:
    async def events() -> AsyncIterator[str]:
        yield 'event: token\ndata: {"text": "Hel"}\n\n'
        yield 'event: token\ndata: {"text": "lo"}\n\n'
        done = {"degraded": False, "answer": "Hello", "sources": [{"id": "c1"}]}
        yield f"event: done\ndata: {json.dumps(done)}\n\n"

    async def collect() -> list[str]:
        return [chunk async for chunk in Completion("sample").chunks(events())]

    chunks = asyncio.run(collect())
    assert chunks[-1] == "data: [DONE]\n\n"
    bodies = [json.loads(c.removeprefix("data: ")) for c in chunks[:-1]]
    assert len({b["id"] for b in bodies}) == 1 and all(b["model"] == "sample" for b in bodies)
    assert bodies[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(b["choices"][0]["delta"].get("content", "") for b in bodies) == "Hello"
    assert bodies[-1]["choices"][0]["finish_reason"] == "stop" and bodies[-1]["sources"] == [{"id": "c1"}]
