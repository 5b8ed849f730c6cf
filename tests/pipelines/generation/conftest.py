from __future__ import annotations

import pytest

from pipelines.generation import OnnxGenerator, make_generator
from pipelines.settings import Settings


@pytest.fixture(scope="session")
def engine(settings: Settings) -> OnnxGenerator:
    """The onnx engine on the packaged model (RAGLINE_GENERATOR=onnx), loaded once for the session."""
    generator = make_generator(settings.model_copy(update={"generator": "onnx"}), threads=2)
    assert isinstance(generator, OnnxGenerator)
    return generator
