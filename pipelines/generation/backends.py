"""Choosing the generation backend the settings ask for. One class per backend, all with the same
`generate(messages)` and `stream(messages)`:

- `LocalGenerator`: a small instruct model with transformers on CPU (default: the packaged
  SmolLM2-135M-Instruct);
- `VLLMGenerator`: a vLLM engine on a GPU (`pip install .[gpu]`);
- `OpenAIGenerator`: any OpenAI-compatible server by URL.
"""

from __future__ import annotations

from pipelines.generation.base import Generator
from pipelines.generation.local import LocalGenerator
from pipelines.generation.openai_server import OpenAIGenerator
from pipelines.generation.vllm_engine import VLLMGenerator
from pipelines.settings import Settings


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
