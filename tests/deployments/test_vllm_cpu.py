"""vLLM for real on this CPU: the project starts vLLM's CPU build (`make vllm-cpu`, its own venv)
as an OpenAI-compatible server on loopback (`RAGLINE_GENERATOR=vllm-cpu`, as `ragline serve` does),
the `openai` backend streams from it, vLLM batches concurrent requests itself, and the project
stops it. A Serve app generating with it: tests/serving/test_vllm_cpu_app.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from deployments.vllm_cpu import VLLMCPUServer, served
from pipelines.generation import GenerationError, OpenAIGenerator
from pipelines.generation.backends import VLLM_CPU_NAME, listwise_llm, make_generator
from pipelines.models import resolve_generator_model
from pipelines.retrieval.listwise import ListwiseReranker
from pipelines.retrieval.query import Hit
from pipelines.settings import Settings

QUESTIONS = ["What is the capital of France?", "What colour is the sky?", "How many legs has a spider?"]


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def vllm_settings(settings: Settings) -> Iterator[Settings]:
    """The settings `ragline serve` runs with under RAGLINE_GENERATOR=vllm-cpu: a server started."""
    # eager: vLLM's own engine and batching, without its ~2 min torch.compile (the benchmark compiles)
    wanted = settings.model_copy(
        update={"generator": "vllm-cpu", "vllm_cpu_eager": True, "openai_base_url": None}
    )
    with served(wanted) as ready:
        assert ready.openai_base_url and ready.answer_sentence_limit == 1  # the packaged model
        yield ready
    with pytest.raises(httpx.ConnectError):  # stopped on the way out
        httpx.get(f"{ready.openai_base_url.removesuffix('/v1')}/health", timeout=5)


@pytest.fixture(scope="module")
def vllm_server(vllm_settings: Settings) -> OpenAIGenerator:
    return OpenAIGenerator(vllm_settings.openai_base_url or "", VLLM_CPU_NAME)


def test_vllm_answers_and_streams(vllm_server: OpenAIGenerator) -> None:
    llm = vllm_server
    out = llm.generate(ask(QUESTIONS[0]), max_tokens=30)
    assert "Paris" in out.text and out.completion_tokens > 0 and out.prompt_tokens > 0
    pieces = list(llm.stream(ask(QUESTIONS[0]), max_tokens=30))
    assert len(pieces) > 3 and "Paris" in "".join(pieces)


def test_concurrent_requests_each_get_their_own_answer(vllm_server: OpenAIGenerator) -> None:
    llm = vllm_server
    alone = [llm.generate(ask(q), max_tokens=25).text for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: llm.generate(ask(q), max_tokens=25).text, QUESTIONS))
    assert together == alone  # batched by vLLM, greedy: each its own answer, unchanged


def test_a_cancelled_stream_stops(vllm_server: OpenAIGenerator) -> None:
    llm = vllm_server
    cancel = threading.Event()
    pieces = []
    for piece in llm.stream(ask("Count from 1 to 300."), max_tokens=400, cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert len(pieces) == 3
    assert "Paris" in llm.generate(ask(QUESTIONS[0]), max_tokens=30).text  # the server goes on


def test_the_served_model_is_the_listwise_reranker_of_openai_settings(
    vllm_server: OpenAIGenerator, settings: Settings
) -> None:
    openai = settings.model_copy(
        update={
            "generator": "openai",
            "openai_base_url": vllm_server.base_url,
            "generator_model": vllm_server.name,
        }
    )
    llm = listwise_llm(openai)
    assert isinstance(llm, OpenAIGenerator)
    reranker = ListwiseReranker(llm)
    texts = ["Bread is baked from flour.", "Paris is the capital of France.", "Spiders have eight legs."]
    hits = [Hit(f"c{i}", f"d{i}", f"doc {i}", t, 1.0 - i / 10) for i, t in enumerate(texts)]
    ranked = reranker.rerank("What is the capital of France?", hits, depth=3)
    assert sorted(h.id for h in ranked) == ["c0", "c1", "c2"] and reranker.calls == 1


def test_without_the_venv_the_error_says_how_to_install(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from deployments.processes import StartError

    with pytest.raises(StartError, match="make vllm-cpu"):
        VLLMCPUServer(settings, venv=tmp_path / "missing")


def test_vllm_cpu_settings_budget_prompts_in_the_models_own_tokens(vllm_settings: Settings) -> None:
    from transformers import AutoTokenizer

    llm = make_generator(vllm_settings)
    assert isinstance(llm, OpenAIGenerator) and llm.name == VLLM_CPU_NAME
    model = resolve_generator_model(vllm_settings.generator_model, vllm_settings.model_cache)
    tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
    text = "Stratovolcanoes erupt explosively; shield volcanoes pour out basaltic lava."
    assert llm.count_tokens(text) == len(tokenizer.encode(text, add_special_tokens=False))
    assert "Paris" in llm.generate(ask(QUESTIONS[0]), max_tokens=30).text


def test_vllm_cpu_without_a_server_says_how_to_get_one(settings: Settings) -> None:
    bare = settings.model_copy(update={"generator": "vllm-cpu", "openai_base_url": None})
    with pytest.raises(GenerationError, match="ragline serve"):
        make_generator(bare)
