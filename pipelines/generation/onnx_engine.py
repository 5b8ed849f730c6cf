"""The default CPU engine: onnxruntime-genai running an ONNX build of the local model (converted
once from the packaged SmolLM2 into the model cache; fp32 by default, int8 on request or `auto`). Tokens
stream as they are made.

Concurrency: onnxruntime-genai's continuous-batching `Engine` needs paged attention, which it
builds for CUDA only; its CPU scheduler runs one request after another. So concurrent chats here
take turns token by token on one model (one lock held per step, not per answer): each stream makes
progress and none waits for another to finish. Measured in benchmarks/generate_speed.py.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.generation.base import STOP, GenerationError, StopScanner, clamp_sampling
from pipelines.generation.cleanup import AnswerFromStream, ChatTemplatePrompts
from pipelines.models import offline_env, onnx_precision, resolve_generator_model, resolve_onnx_model


def engine_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


class OnnxGenerator(ChatTemplatePrompts, AnswerFromStream):
    """onnxruntime-genai on CPU, greedy by default; the same `generate`/`stream` as every backend."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        cache_dir: Path | None = None,
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        offline_env()
        try:
            import onnxruntime_genai as og
        except ImportError as exc:
            raise GenerationError("the onnx engine needs `pip install onnxruntime-genai`") from exc
        from transformers import AutoTokenizer

        cache = cache_dir or Path(".ragline/models")
        source = resolve_generator_model(model_path, cache)
        self.precision = onnx_precision(precision)
        self.model_path = resolve_onnx_model(source, cache, self.precision)
        self.name = source.name
        # Left alone, onnxruntime used one thread of the two here (half the prefill speed): ask.
        self.threads = threads or os.cpu_count() or 1
        config = og.Config(str(self.model_path))
        options = {"session_options": {"intra_op_num_threads": self.threads}}
        config.overlay(json.dumps({"model": {"decoder": options}}))
        self._og = og
        self.model = og.Model(config)
        self.og_tokenizer = og.Tokenizer(self.model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        self._step = threading.Lock()  # one model step at a time; streams interleave step by step

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "engine": "onnxruntime-genai",
            "precision": self.precision,
            "model": self.name,
            "model_path": str(self.model_path),
        }

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
        model's state is freed at once either way. STATE, if given, receives the token counts."""
        og = self._og
        max_tokens, temperature = clamp_sampling(max_tokens, temperature)
        ids = self._prompt_ids(messages)
        params = og.GeneratorParams(self.model)
        search: dict[str, Any] = {"max_length": len(ids) + max_tokens, "no_repeat_ngram_size": 6}
        if temperature > 0:
            search.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            search.update(do_sample=False)
        params.set_search_options(**search)
        state = state if state is not None else {}
        state.update(prompt_tokens=len(ids), completion_tokens=0, finish="stop")
        generator = og.Generator(self.model, params)
        decoder = self.og_tokenizer.create_stream()
        scanner = StopScanner(STOP)
        try:
            with self._step:
                generator.append_tokens(ids)
            while not generator.is_done() and state["completion_tokens"] < max_tokens:
                if cancel is not None and cancel.is_set():
                    state["finish"] = "cancelled"
                    return
                with self._step:
                    generator.generate_next_token()
                    token = int(generator.get_next_tokens()[0])
                state["completion_tokens"] += 1
                piece, stopped = scanner.feed(decoder.decode(token))
                if piece:
                    yield piece
                if stopped:
                    return
            if state["completion_tokens"] >= max_tokens:
                state["finish"] = "length"
            if tail := scanner.flush():
                yield tail
        finally:
            del generator  # frees the KV cache now, also when the consumer stopped early
