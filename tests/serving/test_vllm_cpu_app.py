"""A Serve app whose generator is vLLM's CPU build (`RAGLINE_GENERATOR=vllm-cpu`, the server
started as `ragline serve` starts it): concurrent chats, each answered from its own sources.

Here, not in tests/deployments: the main test service must not start before the tests that run
Serve instances of their own. When it did (this session's first CI run), `ragline serve --config`
(tests/ragline) and the cluster's `serve deploy` (tests/infra) were answered by the main service's
app: two Serve instances in throughput mode on one machine; not yet understood."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from deployments.vllm_cpu import served
from pipelines.generation.backends import VLLM_CPU_NAME
from pipelines.settings import Settings
from tests.serving.extra_apps import delete_extra_app, start_extra_app

APP = "vllmcpu"


@pytest.fixture(scope="module")
def vllm_app(service: str, settings: Settings) -> Iterator[str]:
    wanted = settings.model_copy(
        update={"generator": "vllm-cpu", "vllm_cpu_eager": True, "openai_base_url": None}
    )
    with served(wanted) as ready:
        yield start_extra_app(service, ready, APP)
        delete_extra_app(APP)


def test_a_serve_app_on_vllm_cpu_answers_concurrent_chats(vllm_app: str) -> None:
    questions = ["What is a Fresnel lens?", "How do I fix a flat bicycle tyre?", "Why do volcanoes erupt?"]

    def chat(question: str) -> dict[str, Any]:
        r = httpx.post(f"{vllm_app}/v1/chat", json={"message": question, "max_tokens": 60}, timeout=300)
        assert r.status_code == 200, r.text
        return r.json()

    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(chat, questions))
    for body in answers:
        assert body["model"] == VLLM_CPU_NAME and not body["degraded"], body
        assert body["answer"] and body["usage"]["completion_tokens"] > 0 and body["sources"]
    assert len({body["answer"] for body in answers}) == len(questions)  # each its own
