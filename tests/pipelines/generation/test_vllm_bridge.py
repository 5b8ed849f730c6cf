"""The vLLM backend's bridge to vLLM's async engine, where vLLM cannot run (no GPU here): a
stand-in with the engine's interface (`generate(prompt, params, request_id)` yielding cumulative
outputs, `abort(request_id)`) interleaves concurrent requests the way vLLM's batching does. On a
GPU machine benchmarks/generate_speed.py --engine vllm runs the real one."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines.generation import VLLMGenerator
from pipelines.settings import Settings


class InterleavingEngine:
    """Answers "echo: <question>" word by word, every request a step at a time, all at once."""

    def __init__(self) -> None:
        self.aborted: list[str] = []
        self.started: list[str] = []

    async def generate(self, prompt: str, params: Any, request_id: str) -> Any:
        self.started.append(request_id)
        question = prompt.rsplit("QUESTION=", 1)[1].split("<", 1)[0].strip()
        words = f"echo: {question} and some more words to stream one by one".split()
        for i in range(1, len(words) + 1):
            await asyncio.sleep(0.01)  # other requests step in between
            if request_id in self.aborted:
                return
            text = " ".join(words[:i])
            yield SimpleNamespace(
                prompt_token_ids=[1, 2, 3],
                outputs=[SimpleNamespace(text=text, token_ids=list(range(i)), finish_reason=None)],
            )

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


@pytest.fixture
def vllm(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> VLLMGenerator:
    monkeypatch.setattr(VLLMGenerator, "_params", lambda self, max_tokens, temperature: None)
    return VLLMGenerator(None, settings.model_cache, engine=InterleavingEngine())


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"QUESTION={question}"}]


def test_concurrent_requests_each_get_their_own_answer(vllm: VLLMGenerator) -> None:
    questions = [f"q{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda q: vllm.generate(ask(q), max_tokens=50), questions))
    for q, a in zip(questions, answers, strict=True):
        assert a.text.startswith(f"echo: {q} and") and a.completion_tokens > 5
    assert len(set(vllm.engine.started)) == 8  # one request id each


def test_the_stream_is_the_engines_and_a_cancel_aborts_it(vllm: VLLMGenerator) -> None:
    pieces = list(vllm.stream(ask("streamed"), max_tokens=50))
    assert len(pieces) > 5 and "".join(pieces).startswith("echo: streamed")
    cancel = threading.Event()
    stream = vllm.stream(ask("cancelled"), max_tokens=50, cancel=cancel)
    next(stream)
    cancel.set()
    assert len(list(stream)) < 10
    gone = vllm.stream(ask("client gone"), max_tokens=50)
    next(gone)
    gone.close()
    for _ in range(50):
        if len(vllm.engine.aborted) == 2:
            break
        threading.Event().wait(0.02)
    assert vllm.engine.aborted == vllm.engine.started[1:3]
