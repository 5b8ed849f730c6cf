"""OpenVINO GenAI on CPU: the packaged SmolLM2 GGUF, its weights in f16 (written once into the
model cache, `models.resolve_openvino_gguf`), read by OpenVINO's GGUF reader, computed in bf16
where the CPU has it natively (else f32), with continuous batching. Concurrent chats share each
model step (paged attention, which OpenVINO builds for CPU), so four chats are not four times as
slow; a prompt prefix already in the KV cache (the system prompt, earlier turns) is not computed
again. Prompts are the same token ids as on the other engines (the model's own chat template).

One engine thread steps the pipeline while requests are waiting; each chat reads its tokens from a
queue that thread fills. Measured in benchmarks/generate_speed.py (`--engine openvino`).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.generation.base import STOP, GenerationError, StopScanner, clamp_sampling
from pipelines.generation.cleanup import AnswerFromStream, ChatTemplatePrompts
from pipelines.models import cpu_has_bf16, offline_env, resolve_generator_model, resolve_openvino_gguf

PRECISIONS = ("auto", "f32", "bf16")


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino_genai") is not None


@dataclass
class _Chat:
    """One request in the engine: its handle and the token ids the engine thread hands over."""

    handle: Any
    tokens: queue.SimpleQueue[list[int] | BaseException | None] = field(default_factory=queue.SimpleQueue)


class OpenVINOGenerator(ChatTemplatePrompts, AnswerFromStream):
    """OpenVINO GenAI's continuous-batching pipeline on CPU, greedy by default."""

    batches = True  # concurrent requests share each model step (4 streams: ~2.4x one's tokens/s)

    def __init__(
        self,
        cache_dir: Path | None = None,
        threads: int | None = None,
        precision: str = "auto",
        kv_cache_gb: int = 1,
        prefix_cache: bool = True,
        prefill_tokens: int = 1024,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        if prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1, not {prefill_tokens}")
        offline_env()
        try:
            import openvino_genai as og
        except ImportError as exc:
            raise GenerationError("the openvino engine needs `pip install openvino-genai`") from exc
        from transformers import AutoTokenizer

        cache = cache_dir or Path(".ragline/models")
        self.gguf = resolve_openvino_gguf(cache)
        # the chat template and token counts of the other engines: the same prompts, token for token
        source = resolve_generator_model(None, cache)
        self.tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        self.name = source.name
        self.threads = threads or os.cpu_count() or 1
        # compute and KV cache in one precision: bf16 answered as f32 on the sample set, ~1.6x sooner
        self.precision = ("bf16" if cpu_has_bf16() else "f32") if precision == "auto" else precision
        props: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": self.precision,
            "KV_CACHE_PRECISION": self.precision,
        }
        scheduler = og.SchedulerConfig()
        scheduler.cache_size = kv_cache_gb
        scheduler.enable_prefix_caching = prefix_cache
        # prompt tokens one step computes: each step reads every weight once more, so OpenVINO's
        # 256 split a 650-token prompt in three and cost ~11% of the first token; 1024 takes a
        # typical RAG prompt in one step and still lets running chats step between long prompts
        scheduler.max_num_batched_tokens = prefill_tokens
        self._og = og
        self.pipeline = og.ContinuousBatchingPipeline(str(self.gguf), scheduler, "CPU", props)
        self._eos = set(self.pipeline.get_config().stop_token_ids) | {int(self.tokenizer.eos_token_id)}
        self._lock = threading.Lock()  # the pipeline: one step or one new request at a time
        self._wake = threading.Condition()
        self._chats: dict[int, _Chat] = {}
        self._ids = itertools.count()
        self.most_batched = 0  # the most requests one step has computed together (observability, tests)
        self._thread = threading.Thread(target=self._run, name="openvino-engine", daemon=True)
        self._thread.start()

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "engine": "openvino-genai",
            "precision": self.precision,
            "model": self.name,
            "model_path": str(self.gguf),
        }

    # --- the engine thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: bool(self._chats))
            try:
                with self._lock:
                    self.pipeline.step()
                    batched = self.pipeline.get_metrics().scheduled_requests
                    self.most_batched = max(self.most_batched, batched)
                    self._hand_over()
            except Exception as exc:  # every waiting chat hears of it; the engine goes on
                with self._lock:
                    for chat in self._chats.values():
                        chat.tokens.put(GenerationError(f"the openvino engine failed: {exc}"))
                    self._chats.clear()

    def _hand_over(self) -> None:
        running = self._og.GenerationStatus.RUNNING
        for rid, chat in list(self._chats.items()):
            if chat.handle.can_read():
                chat.tokens.put([int(t) for t in chat.handle.read()[0].generated_ids])
            if chat.handle.get_status() != running and not chat.handle.can_read():
                chat.tokens.put(None)
                del self._chats[rid]

    def _start(self, ids: list[int], config: Any) -> tuple[int, _Chat]:
        import numpy as np
        import openvino as ov

        rid = next(self._ids)
        with self._lock:
            chat = _Chat(self.pipeline.add_request(rid, ov.Tensor(np.array([ids], dtype=np.int64)), config))
            self._chats[rid] = chat
        with self._wake:
            self._wake.notify()
        return rid, chat

    def _drop(self, rid: int) -> None:
        with self._lock:
            chat = self._chats.pop(rid, None)
            if chat is not None and chat.handle.get_status() == self._og.GenerationStatus.RUNNING:
                chat.handle.cancel()  # its KV blocks are freed at the next step

    # --- one chat --------------------------------------------------------------------------------
    def _config(self, max_tokens: int, temperature: float) -> Any:
        config = self.pipeline.get_config()
        config.max_new_tokens = max_tokens
        config.no_repeat_ngram_size = 6  # as on the onnx engine: cuts the small model's loops
        config.stop_token_ids = self._eos
        config.do_sample = temperature > 0
        if temperature > 0:
            config.temperature, config.top_p = temperature, 0.95
        return config

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
        state: dict[str, Any] | None = None,
    ) -> Iterator[str]:
        """Yields text pieces as they are made. Stops at a stop sequence, at max_tokens, when
        `cancel` is set, or when the consumer closes the iterator (a client that went away): the
        request leaves the engine at once either way. STATE, if given, receives the token counts."""
        max_tokens, temperature = clamp_sampling(max_tokens, temperature)
        ids = self._prompt_ids(messages)
        state = state if state is not None else {}
        state.update(prompt_tokens=len(ids), completion_tokens=0, finish="stop")
        rid, chat = self._start(ids, self._config(max_tokens, temperature))
        made: list[int] = []
        shown = 0
        scanner = StopScanner(STOP)
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    state["finish"] = "cancelled"
                    return
                try:
                    got = chat.tokens.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(got, BaseException):
                    raise got
                if got is None:
                    break
                made += [t for t in got if t not in self._eos]
                state["completion_tokens"] = len(made)
                # decoded whole each time: a piece never ends inside a multi-byte character
                text = self.tokenizer.decode(made, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue
                piece, stopped = scanner.feed(text[shown:])
                shown = len(text)
                if piece:
                    yield piece
                if stopped:
                    return
            if state["completion_tokens"] >= max_tokens:
                state["finish"] = "length"
            if tail := scanner.flush():
                yield tail
        finally:
            self._drop(rid)
