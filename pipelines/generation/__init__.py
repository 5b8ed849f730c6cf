"""Generation: retrieved passages and a question become an answer. `prompts` builds the messages
(sources numbered for citation) and condenses follow-up questions; `base` is what every backend
shares (the `Generator` protocol, sampling limits, stop sequences), `cleanup` what every answer
goes through (loops cut, ended at a complete sentence, prose spacing); one module per backend:
`onnx_engine` (onnxruntime-genai on CPU, the default), `local` (transformers, the fallback),
`openai_server` (any OpenAI-compatible server) and
`vllm_engine` (vLLM on a GPU); `backends.make_generator` picks the one the settings name. The
answer checks come after the model: `citations` (each sentence's [n] checked or repaired) and,
before it, `refusal` (the sources do not answer: no model call)."""

from pipelines.generation.backends import make_generator
from pipelines.generation.base import (
    MAX_TOKENS_CAP,
    STOP,
    Generation,
    GenerationError,
    Generator,
    clamp_sampling,
    cut_at_stop,
)
from pipelines.generation.cleanup import clean_answer
from pipelines.generation.local import LocalGenerator
from pipelines.generation.onnx_engine import OnnxGenerator
from pipelines.generation.openai_server import OpenAIGenerator
from pipelines.generation.openvino_engine import OpenVINOGenerator
from pipelines.generation.vllm_engine import VLLMGenerator

__all__ = [
    "MAX_TOKENS_CAP",
    "STOP",
    "Generation",
    "GenerationError",
    "Generator",
    "LocalGenerator",
    "OnnxGenerator",
    "OpenAIGenerator",
    "OpenVINOGenerator",
    "VLLMGenerator",
    "clamp_sampling",
    "clean_answer",
    "cut_at_stop",
    "make_generator",
]
