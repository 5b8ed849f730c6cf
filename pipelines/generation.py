"""Generation backends, one class each, all with the same `generate(messages)`:

- `LocalGenerator`: a small instruct model with transformers on CPU (default: the packaged
  SmolLM2-135M-Instruct);
- `VLLMGenerator`: a vLLM engine on a GPU (`pip install .[gpu]`);
- `OpenAIGenerator`: any OpenAI-compatible server by URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from pipelines.models import offline_env, resolve_generator_model
from pipelines.settings import Settings

MAX_TOKENS_CAP = 1024
STOP = ("\nQuestion:", "\nSources:", "<|im_end|>")


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


class _WholeAnswerStream:
    """For backends called here without token streaming: one piece, the whole answer."""

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Iterator[str]:
        yield self.generate(messages, max_tokens=max_tokens, temperature=temperature).text  # type: ignore[attr-defined]


class LocalGenerator:
    """A transformers causal LM on CPU (or GPU if present), greedy by default."""

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
        return {"backend": "local", "model": self.name, "model_path": str(self.model_path)}

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

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
        return Generation(cut_at_stop(text), n_prompt, len(new), self.name, finish)

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Iterator[str]:
        """Yields text pieces as they are generated."""
        import torch
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> None:
            with self._lock, torch.inference_mode():
                self.model.generate(**inputs, **self._kwargs(max_tokens, temperature), streamer=streamer)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        yield from streamer
        worker.join()


class OpenAIGenerator(_WholeAnswerStream):
    """Any server that speaks the OpenAI chat-completions API (vLLM's server, llama.cpp, ...)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        if not base_url:
            raise ValueError("OpenAIGenerator needs a base_url (RAGLINE_OPENAI_BASE_URL)")
        self.base_url = base_url.rstrip("/")
        self.name = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.name, "base_url": self.base_url}

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)  # the server's tokenizer is not available here: an estimate

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Generation:
        import httpx

        max_tokens, temperature = clamp_sampling(max_tokens, temperature)
        try:
            r = self._client.post(
                "/chat/completions",
                json={
                    "model": self.name,
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    "stop": list(STOP),
                },
            )
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise GenerationError(f"OpenAI-compatible server at {self.base_url} failed: {exc}") from exc
        body = r.json()
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        return Generation(
            choice["message"]["content"].strip(),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            self.name,
            choice.get("finish_reason") or "stop",
        )


class VLLMGenerator(_WholeAnswerStream):
    """A vLLM engine on a GPU, loading a local model folder (e.g. the converted SmolLM2)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        cache_dir: Path | None = None,
        gpu_memory_utilization: float = 0.5,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise GenerationError("the vllm backend needs `pip install .[gpu]` on a CUDA machine") from exc
        self.model_path = resolve_generator_model(model_path, cache_dir or Path(".ragline/models"))
        self.name = self.model_path.name
        self.llm = LLM(model=str(self.model_path), gpu_memory_utilization=gpu_memory_utilization)
        self.tokenizer = self.llm.get_tokenizer()

    def to_dict(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.name, "model_path": str(self.model_path)}

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Generation:
        from vllm import SamplingParams

        max_tokens, temperature = clamp_sampling(max_tokens, temperature)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, stop=list(STOP))
        out = self.llm.chat(messages, params, use_tqdm=False)[0]
        comp = out.outputs[0]
        return Generation(
            comp.text.strip(),
            len(out.prompt_token_ids),
            len(comp.token_ids),
            self.name,
            comp.finish_reason or "stop",
        )


def make_generator(settings: Settings, threads: int | None = None) -> Generator | None:
    """The generator the settings ask for; None when generation is off (retrieval-only answers)."""
    if settings.generator == "none":
        return None
    if settings.generator == "openai":
        return OpenAIGenerator(
            settings.openai_base_url or "", settings.generator_model or "default", settings.openai_api_key
        )
    if settings.generator == "vllm":
        return VLLMGenerator(settings.generator_model, settings.model_cache)
    return LocalGenerator(settings.generator_model, settings.model_cache, threads=threads)
