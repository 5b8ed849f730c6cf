"""The local generation engines for real: onnxruntime-genai on the packaged SmolLM2, converted
once into the session's model cache (the engine for a model folder of your own), and the
transformers fallback. The default engine, OpenVINO, is in test_openvino_engine.py."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipelines.generation import LocalGenerator, OnnxGenerator, make_generator
from pipelines.generation import backends as backends_module
from pipelines.generation.base import StopScanner
from pipelines.models import cpu_has_vnni, onnx_precision
from pipelines.settings import Settings

QUESTIONS = ["What is the capital of France?", "What colour is the sky?", "How many legs has a spider?"]


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def test_the_onnx_engine_answers_and_reports_itself(engine: OnnxGenerator) -> None:
    out = engine.generate(ask(QUESTIONS[0]), max_tokens=40)
    assert "Paris" in out.text
    assert out.prompt_tokens > 5 and 0 < out.completion_tokens <= 40
    assert engine.to_dict()["engine"] == "onnxruntime-genai"
    assert (engine.model_path / "genai_config.json").is_file()  # converted once, into the cache


def test_auto_precision_is_int8_only_where_the_cpu_has_vnni(engine: OnnxGenerator, tmp_path: Path) -> None:
    assert engine.precision == "fp32" == engine.to_dict()["precision"]  # its default: the best answers
    assert engine.model_path.name.endswith("-onnx-fp32")
    assert onnx_precision("auto") == ("int8" if cpu_has_vnni() else "fp32")
    zen4, haswell = tmp_path / "zen4", tmp_path / "haswell"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    haswell.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_has_vnni(zen4) and not cpu_has_vnni(haswell)
    assert not cpu_has_vnni(tmp_path / "missing")  # no /proc: the safe choice, fp32
    assert onnx_precision("fp32") == "fp32" and onnx_precision("int4") == "int4"


def test_the_int8_build_keeps_the_packaged_models_answers(settings: Settings) -> None:
    """int8 weights with a zero point per block, as the packaged Q4_1 GGUF's are: the builder's
    symmetric int8 answered "L'Étoile, la Cité, ..." to the first question."""
    int8 = OnnxGenerator(None, settings.model_cache, threads=2, precision="int8")
    assert int8.model_path.name.endswith("-onnx-int8-asym")
    assert "Paris" in int8.generate(ask(QUESTIONS[0]), max_tokens=30).text


def test_the_engine_streams_token_by_token(engine: OnnxGenerator) -> None:
    pieces = list(engine.stream(ask(QUESTIONS[0]), max_tokens=30))
    assert len(pieces) > 5
    assert "Paris" in "".join(pieces)


def test_max_tokens_is_a_hard_limit(engine: OnnxGenerator) -> None:
    out = engine.generate(ask("Count from 1 to 200, one number per line."), max_tokens=12)
    assert out.completion_tokens == 12 and out.finish_reason == "length"


def test_cancel_stops_the_engine_and_frees_it(engine: OnnxGenerator) -> None:
    cancel = threading.Event()
    state: dict[str, object] = {}
    stream = engine.stream(ask("Count from 1 to 200."), max_tokens=300, cancel=cancel, state=state)
    for seen, _ in enumerate(stream, start=1):
        if seen == 3:
            cancel.set()
    assert state["finish"] == "cancelled" and state["completion_tokens"] <= 4
    # A consumer that just stops reading (a client gone) frees it too: the next answer runs.
    stream = engine.stream(ask("Count from 1 to 200."), max_tokens=300)
    next(stream)
    stream.close()
    assert engine._step.acquire(timeout=1)  # nobody holds the model
    engine._step.release()
    assert "Paris" in engine.generate(ask(QUESTIONS[0]), max_tokens=30).text


def test_concurrent_streams_each_get_their_own_answer(engine: OnnxGenerator) -> None:
    alone = [engine.generate(ask(q), max_tokens=25).text for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: engine.generate(ask(q), max_tokens=25).text, QUESTIONS))
    assert together == alone  # greedy: interleaving steps changes nothing in any answer


def test_a_stop_sequence_never_reaches_the_reader() -> None:
    scanner = StopScanner(("\nQuestion:",))
    sent = [scanner.feed(p) for p in ["Paris is", " the capital.\nQu", "estion: what"]]
    assert [s for s, _ in sent] == ["Paris is", " the capital.", ""]
    assert sent[-1][1] is True
    held = StopScanner(("\nQuestion:",))
    assert held.feed("A\nQue") == ("A", False) and held.feed("en") == ("\nQueen", False)


def test_without_either_engine_local_falls_back_to_transformers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends_module, "openvino_available", lambda: False)
    monkeypatch.setattr(backends_module, "engine_available", lambda: False)
    fallback = make_generator(settings, threads=2)
    assert isinstance(fallback, LocalGenerator)
    assert fallback.to_dict()["engine"] == "transformers"
    assert "Paris" in fallback.generate(ask(QUESTIONS[0]), max_tokens=30).text
    cancel = threading.Event()
    pieces = []
    for piece in fallback.stream(ask("Count from 1 to 200."), max_tokens=300, cancel=cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert len(pieces) < 20  # stopped at the next token, not after 300
