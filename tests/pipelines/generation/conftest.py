from __future__ import annotations

import pytest

from pipelines.generation import OnnxGenerator, make_generator
from pipelines.settings import Settings


@pytest.fixture(scope="session")
def engine(settings: Settings) -> OnnxGenerator:
    """The default engine on the packaged model, loaded once for the session."""
    generator = make_generator(settings, threads=2)
    assert isinstance(generator, OnnxGenerator)  # the default, since the engine is installed
    return generator
