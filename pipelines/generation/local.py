"""The fallback local backend: the model through transformers (CPU, or a GPU if present). The
default engine is onnxruntime-genai (`onnx_engine`); this one runs where that is not installed,
and for models its builder cannot convert."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.generation.base import Generation, clamp_sampling
from pipelines.generation.cleanup import ChatTemplatePrompts, clean_answer
from pipelines.models import offline_env, resolve_generator_model


class LocalGenerator(ChatTemplatePrompts):
    """A transformers causal LM on CPU (or GPU if present), greedy by default. One answer at a time
    per replica: torch already uses every core."""

    def __init__(
        self, model_path: str | Path | None = None, cache_dir: Path | None = None, threads: int | None = None
    ) -> None:
        offline_env()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_path = resolve_generator_model(model_path, cache_dir or Path(".ragline/models"))
        self.name = self.model_path.name
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(self.model_path), local_files_only=True)
        self.model.eval()
        self._lock = threading.Lock()  # one generate at a time per replica: torch already uses every core

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "engine": "transformers",
            "model": self.name,
            "model_path": str(self.model_path),
        }

    def _inputs(self, messages: list[dict[str, str]]) -> Any:
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    def _kwargs(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        max_tokens, temperature = clamp_sampling(max_tokens, temperature)
        kw: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            # No repetition_penalty: HF applies it to the prompt's tokens too, which punishes
            # copying from the sources. An n-gram block stops loops without that cost.
            "no_repeat_ngram_size": 6,
            "pad_token_id": self.tokenizer.eos_token_id,
        }
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature, top_p=0.95)
        else:
            kw.update(do_sample=False)
        return kw

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Generation:
        import torch

        inputs = self._inputs(messages)
        n_prompt = int(inputs["input_ids"].shape[1])
        with self._lock, torch.inference_mode():
            out = self.model.generate(**inputs, **self._kwargs(max_tokens, temperature))
        new = out[0, n_prompt:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= clamp_sampling(max_tokens, temperature)[0] else "stop"
        return Generation(clean_answer(text), n_prompt, len(new), self.name, finish)

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yields text pieces as they are generated; generation stops at the next token once
        `cancel` is set or the consumer closes the iterator."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = cancel or threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        def run() -> None:
            with self._lock, torch.inference_mode():
                self.model.generate(
                    **inputs,
                    **self._kwargs(max_tokens, temperature),
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                )

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            yield from streamer
        finally:
            stop.set()  # a consumer that stopped early frees the model at the next token
            worker.join()
