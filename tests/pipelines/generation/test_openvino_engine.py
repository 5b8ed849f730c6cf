"""The default CPU engine for real: OpenVINO GenAI reading the packaged SmolLM2 GGUF, with
continuous batching of concurrent chats; and the fallbacks when it is missing or cannot serve."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipelines.generation import GenerationError, OnnxGenerator, OpenVINOGenerator, make_generator
from pipelines.generation import backends as backends_module
from pipelines.settings import Settings

QUESTIONS = ["What is the capital of France?", "What colour is the sky?", "How many legs has a spider?"]


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def openvino(settings: Settings) -> OpenVINOGenerator:
    generator = make_generator(settings, threads=2)
    assert isinstance(generator, OpenVINOGenerator)  # the default for the packaged model
    return generator


def test_the_default_engine_answers_from_the_packaged_gguf(openvino: OpenVINOGenerator) -> None:
    out = openvino.generate(ask(QUESTIONS[0]), max_tokens=40)
    assert "Paris" in out.text and out.finish_reason == "stop"
    assert out.prompt_tokens > 5 and 0 < out.completion_tokens <= 40
    described = openvino.to_dict()
    assert described["engine"] == "openvino-genai" and described["precision"] in ("bf16", "f32")
    assert described["model_path"].endswith(".F16.gguf")  # written once into the model cache
    # prompts are the other engines' token for token: the same chat template, the same count
    assert openvino.count_tokens("Stratovolcanoes erupt explosively.") == len(
        openvino.tokenizer.encode("Stratovolcanoes erupt explosively.", add_special_tokens=False)
    )


def test_it_streams_and_max_tokens_is_a_hard_limit(openvino: OpenVINOGenerator) -> None:
    pieces = list(openvino.stream(ask(QUESTIONS[0]), max_tokens=30))
    assert len(pieces) > 5 and "Paris" in "".join(pieces)
    out = openvino.generate(ask("Count from 1 to 200, one number per line."), max_tokens=12)
    assert out.completion_tokens == 12 and out.finish_reason == "length"


def test_cancel_and_a_closed_stream_take_the_request_out_of_the_engine(openvino: OpenVINOGenerator) -> None:
    cancel = threading.Event()
    state: dict[str, object] = {}
    stream = openvino.stream(ask("Count from 1 to 200."), max_tokens=300, cancel=cancel, state=state)
    for seen, _ in enumerate(stream, start=1):
        if seen == 3:
            cancel.set()
    assert state["finish"] == "cancelled" and int(state["completion_tokens"]) < 20  # type: ignore[call-overload]
    assert not openvino._chats
    stream = openvino.stream(ask("Count from 1 to 200."), max_tokens=300)
    next(stream)
    stream.close()  # a client that went away
    assert not openvino._chats
    assert "Paris" in openvino.generate(ask(QUESTIONS[0]), max_tokens=30).text


def test_concurrent_chats_are_batched_and_each_gets_its_own_answer(openvino: OpenVINOGenerator) -> None:
    alone = [openvino.generate(ask(q), max_tokens=25).text for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: openvino.generate(ask(q), max_tokens=25).text, QUESTIONS))
    assert together == alone  # greedy, batch-invariant kernels: no answer changes, none is swapped
    assert openvino.most_batched >= 2  # steps computed several chats at once


def test_local_means_openvino_for_the_packaged_model_only(
    settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    own = settings.model_copy(update={"generator": "openvino", "generator_model": str(tmp_path)})
    with pytest.raises(GenerationError, match="RAGLINE_GENERATOR=onnx"):
        make_generator(own)
    monkeypatch.setattr(backends_module, "openvino_available", lambda: False)
    assert isinstance(make_generator(settings, threads=2), OnnxGenerator)  # OpenVINO missing
    with pytest.raises(ValueError, match="prefill_tokens"):
        OpenVINOGenerator(settings.model_cache, prefill_tokens=0)
