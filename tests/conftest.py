"""Test set-up: one throwaway data dir per session (LanceDB, Prefect home, Ray temp, model cache),
set before anything reads the settings. Everything the tests use is real: Prefect's temporary
server, a local Ray, LanceDB on disk, Great Expectations, and the packaged models."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_DATA = Path(tempfile.mkdtemp(prefix="rl-"))  # short: Ray's socket paths live below it
os.environ["RAGLINE_DATA_DIR"] = str(_DATA)
# Every data dir of the session (the CLI tests make their own) shares one model cache, so the
# generator is converted once per session, as `ragline prepare` does once per machine.
os.environ.setdefault("RAGLINE_MODEL_CACHE_DIR", str(_DATA / "models"))
os.environ.setdefault("RAGLINE_RAY_NUM_CPUS", "2")
os.environ.pop("RAY_ADDRESS", None)
os.environ.pop("PREFECT_API_URL", None)

from pipelines.runtime import configure  # noqa: E402
from pipelines.settings import Settings, get_settings  # noqa: E402

configure(get_settings())

CORPUS = Path(__file__).parent / "data" / "corpus"
E2E_COLLECTION = "e2e"
# A second collection: documents that attack the prompt and the chat page, and another tenant's data.
HOSTILE = Path(__file__).parent / "data" / "hostile"
HOSTILE_COLLECTION = "hostile"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from pipelines.index.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """A small corpus of real documents: the bundled sample files plus a few test files."""
    from pipelines.sample import write_sample_corpus

    dest = _DATA / "test-corpus"
    write_sample_corpus(dest, include_python_reference=False)
    for f in CORPUS.iterdir():
        shutil.copy(f, dest / "docs" / f.name)
    return dest / "docs"


@pytest.fixture(scope="session")
def ray_session(settings: Settings) -> Iterator[None]:
    from pipelines.runtime import ensure_ray

    ensure_ray(settings)
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="session")
def service(settings: Settings, corpus_dir: Path, ray_session: None) -> Iterator[str]:
    """The real Serve app over a small corpus that the real refresh flow ingested and embedded."""
    from flows.refresh import refresh_flow
    from serving import runner

    result = refresh_flow([str(corpus_dir)], E2E_COLLECTION)
    assert result["ingest"]["quarantined"] == 0
    assert result["embed"]["embedded"] == result["ingest"]["chunks"] > 0
    # Built before Serve starts: embedding needs the CPUs that the running app holds.
    hostile = refresh_flow([str(HOSTILE)], HOSTILE_COLLECTION)
    assert hostile["ingest"]["quarantined"] == 0 and hostile["embed"]["embedded"] > 0
    url = runner.start(
        settings.model_copy(update={"default_collection": E2E_COLLECTION, "port": free_port()})
    )
    yield url
    runner.stop(shutdown_ray=False)


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_server() -> Iterator[None]:
    """Stop Prefect's temporary server while pytest's output is still open (not at exit)."""
    yield
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_DATA, ignore_errors=True)
