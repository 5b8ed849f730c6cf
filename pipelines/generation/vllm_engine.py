"""A vLLM engine on a GPU (`pip install .[gpu]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.generation.base import STOP, Generation, GenerationError, WholeAnswerStream, clamp_sampling
from pipelines.generation.cleanup import clean_answer
from pipelines.models import resolve_generator_model


class VLLMGenerator(WholeAnswerStream):
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
            clean_answer(comp.text),
            len(out.prompt_token_ids),
            len(comp.token_ids),
            self.name,
            comp.finish_reason or "stop",
        )
