"""A question the sources do not answer is refused without a model call: the fixed refusal, the
closest sources, no tokens. The threshold comes with the champion (what `ragline optimize` stores),
and serving follows it without a restart."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from pipelines.generation.refusal import REFUSAL_ANSWER
from pipelines.settings import Settings
from pipelines.store import Store
from tests.conftest import E2E_COLLECTION

QUESTION = "What did the keeper eat for breakfast on the moon?"


def _chat(url: str, **extra: Any) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/chat", json={"message": QUESTION, "max_tokens": 4, **extra}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_question_below_the_champions_evidence_threshold_is_refused_without_the_model(
    service: str, settings: Settings
) -> None:
    store = Store(settings.lancedb_location)
    # A threshold no passage reaches, as a calibration on a set of off-topic questions could give.
    store.set_champion(
        E2E_COLLECTION, {"name": E2E_COLLECTION, "version": "9", "refusal": {"min_similarity": 0.99}}
    )
    try:
        deadline = time.monotonic() + 40
        while not (body := _chat(service))["refused"] and time.monotonic() < deadline:
            time.sleep(1)  # serving re-reads the champion every few seconds
        assert body["refused"] is True and body["answer"] == REFUSAL_ANSWER
        assert body["model"] == "none" and body["usage"]["completion_tokens"] == 0  # no model call
        assert body["sources"] and body["grounded"] is False and body["degraded"] is False

        with httpx.stream(
            "POST", f"{service}/v1/chat", json={"message": QUESTION, "stream": True}, timeout=300
        ) as r:
            lines = list(r.iter_lines())
        events = [line for line in lines if line.startswith("event: ")]
        data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
        assert events == ["event: done"]  # no token: nothing was generated
        assert data[-1]["refused"] is True and data[-1]["answer"] == REFUSAL_ANSWER
    finally:
        store.set_champion(E2E_COLLECTION, None)
        # Wait out serving's champion recheck, so that no later test meets the threshold.
        deadline = time.monotonic() + 40
        while (body := _chat(service))["refused"] and time.monotonic() < deadline:
            time.sleep(1)
    assert body["refused"] is False and body["model"] != "none"  # demoted: the model answers again
