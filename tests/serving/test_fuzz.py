"""The HTTP API fuzzed from its own OpenAPI schema by schemathesis: whatever the generated input, no
5xx. Against a real app with API keys on and generation off (`generator=none`: every chat answers
from passages at once), so the run stays short while the body parsing, the validation, the key and
collection checks and the retrieval all see the generated input. It runs schemathesis's command line
(examples, coverage and fuzzing phases); the pytest plugin's fixture loader breaks on pytest 9."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from pipelines.settings import Settings
from serving.keys import KeyStore
from tests.serving.extra_apps import delete_extra_app, start_extra_app

pytestmark = pytest.mark.e2e

APP = "fuzz"
MAX_EXAMPLES = 25  # per operation and phase: enough to hit every bound, short on 2 cores
OPERATIONS = {
    "POST /v1/chat",
    "POST /v1/chat/completions",
    "POST /v1/search",
    "POST /v1/feedback",
    "GET /v1/models",
}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def fuzz_service(service: str, settings: Settings) -> Iterator[str]:
    yield start_extra_app(service, settings, APP, auth=True, generator="none")
    delete_extra_app(APP)


@pytest.fixture(scope="module")
def fuzz_key(settings: Settings) -> Iterator[str]:
    store = KeyStore(settings.sessions_database)
    key, secret = store.create("fuzz", ["*"])
    yield secret
    store.revoke(key.id)


def test_no_generated_input_gets_a_server_error(fuzz_service: str, fuzz_key: str, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{fuzz_service}/openapi.json",
        "--url",
        fuzz_service,
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
        "--header",
        f"Authorization: Bearer {fuzz_key}",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    (report,) = tmp_path.glob("**/*.xml")
    tested = {case.get("name") for case in ElementTree.parse(report).iter("testcase")}
    assert tested >= OPERATIONS, tested
