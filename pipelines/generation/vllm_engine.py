"""vLLM on a GPU (`pip install .[gpu]`), through its async engine: every request has its own id,
so concurrent chats are batched by vLLM itself and each gets its own answer back (the offline
`LLM` class returns whatever requests finished, so two threads could swap answers), tokens
stream as vLLM makes them, and a cancelled chat is aborted in the engine."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.generation.base import STOP, GenerationError, clamp_sampling
from pipelines.generation.cleanup import AnswerFromStream
from pipelines.models import resolve_generator_model

_DONE = object()


class VLLMGenerator(AnswerFromStream):
    """vLLM's `AsyncLLMEngine` on a loop of its own thread, behind the same sync `generate` and
    `stream` as every backend (serving calls them from worker threads)."""

    batches = True  # continuous batching

    def __init__(
        self,
        model_path: str | Path | None = None,
        cache_dir: Path | None = None,
        gpu_memory_utilization: float = 0.9,
        max_num_seqs: int = 64,
        engine: Any = None,
    ) -> None:
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        self.model_path = resolve_generator_model(model_path, cache_dir or Path(".ragline/models"))
        self.name = self.model_path.name
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        self.gpu_memory_utilization = gpu_memory_utilization
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True).start()
        self.engine = engine or self._start_engine(max_num_seqs)

    def _start_engine(self, max_num_seqs: int) -> Any:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as exc:
            raise GenerationError("the vllm backend needs `pip install .[gpu]` on a CUDA machine") from exc
        args = AsyncEngineArgs(
            model=str(self.model_path),
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_num_seqs=max_num_seqs,
        )

        async def build() -> Any:  # the engine belongs to the loop it was made on
            return AsyncLLMEngine.from_engine_args(args)

        return asyncio.run_coroutine_threadsafe(build(), self._loop).result()

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": "vllm",
            "engine": "vllm-async",
            "model": self.name,
            "model_path": str(self.model_path),
            "gpu_memory_utilization": self.gpu_memory_utilization,
        }

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _params(self, max_tokens: int, temperature: float) -> Any:
        from vllm import SamplingParams

        max_tokens, temperature = clamp_sampling(max_tokens, temperature)
        return SamplingParams(max_tokens=max_tokens, temperature=temperature, stop=list(STOP))

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        state: dict[str, Any] | None = None,
    ) -> Iterator[str]:
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        request_id = uuid.uuid4().hex
        pieces: queue.Queue[Any] = queue.Queue()
        params = self._params(max_tokens, temperature)
        state = state if state is not None else {}
        state.update(prompt_tokens=0, completion_tokens=0, finish="stop")

        async def run() -> None:
            sent = 0
            try:
                async for out in self.engine.generate(prompt, params, request_id):
                    completion = out.outputs[0]
                    pieces.put(completion.text[sent:])
                    sent = len(completion.text)
                    state.update(
                        prompt_tokens=len(out.prompt_token_ids or []),
                        completion_tokens=len(completion.token_ids),
                        finish=completion.finish_reason or "stop",
                    )
                pieces.put(_DONE)
            except Exception as exc:  # the engine's failure reaches the caller, as a GenerationError
                pieces.put(GenerationError(f"vLLM failed: {exc}"))

        asyncio.run_coroutine_threadsafe(run(), self._loop)
        finished = False
        try:
            while cancel is None or not cancel.is_set():
                try:
                    item = pieces.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, Exception):
                    finished = True
                    raise item
                if item:
                    yield item
        finally:
            if not finished:  # cancelled, or the consumer went away: free the engine's slot
                state["finish"] = "cancelled"
                asyncio.run_coroutine_threadsafe(self.engine.abort(request_id), self._loop)
