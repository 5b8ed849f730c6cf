"""How the flows fail, retry and exclude each other, on Prefect's real (temporary) server, and what a
failed embed run leaves behind: the index that served before, with every row it had."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from benchmarks.corpus import chunk_frame, passages
from flows.embed import embed_flow
from flows.policy import TRANSIENT_RETRIES, collection_lock, is_transient, lock_name
from flows.refresh import refresh_flow
from pipelines.index.embedding import embed_collection
from pipelines.ingest import tables as ingest
from pipelines.settings import Settings
from pipelines.store import Store, sql_in


def test_only_transient_errors_count_as_transient() -> None:
    from prefect.task_engine import TaskRunTimeoutError

    assert is_transient(ConnectionResetError()) and is_transient(OSError("Retryable commit conflict"))
    assert not is_transient(FileNotFoundError("gone")) and not is_transient(ValueError("bad input"))
    assert not is_transient(TaskRunTimeoutError("too slow"))


def test_a_task_retries_a_transient_error_but_not_bad_input() -> None:
    calls = {"flaky": 0, "bad": 0}
    options = {**TRANSIENT_RETRIES, "retry_delay_seconds": 0, "retry_jitter_factor": None}

    @task(**options)
    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionResetError("storage hiccup")
        return "ok"

    @task(**options)
    def bad() -> None:
        calls["bad"] += 1
        raise ValueError("a document with no text")

    @flow
    def run_flaky() -> str:
        return flaky()

    @flow
    def run_bad() -> None:
        bad()

    assert run_flaky() == "ok" and calls["flaky"] == 2
    with pytest.raises(ValueError):
        run_bad()
    assert calls["bad"] == 1


def _flow_run_state(state: object) -> StateType:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).state.type  # type: ignore[attr-defined]


def test_embed_of_a_collection_never_ingested_fails_with_its_reason() -> None:
    state = embed_flow("never-ingested", return_state=True)
    assert state.is_failed()
    assert "has no chunks" in state.message and "\n" not in state.message
    assert _flow_run_state(state) == StateType.FAILED  # what the Prefect UI shows


@pytest.fixture
def held_lock() -> Iterator[str]:
    with collection_lock("refresh", "locked", wait_s=30):
        yield "locked"


def test_a_second_refresh_of_a_collection_fails_while_one_holds_it(held_lock: str) -> None:
    state = refresh_flow(["/nowhere"], held_lock, lock_wait_s=2, return_state=True)
    assert state.is_failed()
    assert "another refresh of collection 'locked' is running" in state.message
    assert "\n" not in state.message
    assert _flow_run_state(state) == StateType.FAILED
    with get_client(sync_client=True) as client:  # the flow created the 1-slot limit itself
        limit = client.read_global_concurrency_limit_by_name(lock_name("refresh", held_lock))
    assert (limit.limit, limit.active_slots) == (1, 1)


def _active_slots(collection: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(lock_name("refresh", collection)).active_slots


def test_the_lock_is_free_again_once_released_and_per_collection() -> None:
    # "second" is taken (within 5 s) while "first" is held: the locks are per collection ...
    with collection_lock("refresh", "first", wait_s=30), collection_lock("refresh", "second", wait_s=5):
        assert (_active_slots("first"), _active_slots("second")) == (1, 1)
    assert (_active_slots("first"), _active_slots("second")) == (0, 0)  # ... and released on exit
    with collection_lock("refresh", "first", wait_s=5):  # taken again at once
        assert _active_slots("first") == 1
    assert _active_slots("first") == 0


def _ids(table) -> set[str]:  # type: ignore[no-untyped-def]
    return set(table.to_arrow().column("id").to_pylist())


@pytest.mark.usefixtures("ray_session")
def test_an_embed_run_failing_half_way_leaves_the_active_index_and_its_rows(settings: Settings) -> None:
    store = Store(settings.lancedb_location)
    texts = passages(340, max_chars=300)
    ingest.write_chunks(store, "halfway", [], chunk_frame(texts[:40], prefix="old"))
    first = embed_collection(store, "halfway")
    before = _ids(store.active_index("halfway"))
    assert len(before) == 40

    # Ten chunks removed (their vectors are now stale) and 300 new ones to embed ...
    store.chunks("halfway").delete(sql_in("id", [f"old{i}" for i in range(10)]))
    ingest.write_chunks(store, "halfway", [], chunk_frame(texts[40:], prefix="new"))

    def crash(done: int, total: int) -> None:  # ... and the run dies after its first write
        raise RuntimeError("the embedding worker was lost")

    with pytest.raises(RuntimeError, match="worker was lost"):
        embed_collection(store, "halfway", write_every=64, on_progress=crash)
    active = store.active_index("halfway")
    assert active.name == first.table
    after = _ids(active)
    assert before <= after  # no row deleted
    assert 0 < len(after - before) < 300  # it did stop half-way

    done = embed_collection(store, "halfway")  # the next run finishes the job
    assert (done.deleted, done.embedded) == (10, 300 - len(after - before))
    assert _ids(store.active_index("halfway")) == _ids(store.chunks("halfway"))


def test_a_failing_flow_ends_the_command_with_a_one_line_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "MLFLOW_TRACKING_URI")}
    env["RAGLINE_DATA_DIR"] = str(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "ragline", "embed", "-c", "never-ingested"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr[-2000:]
    assert errors[0].startswith("error: embed failed: collection 'never-ingested' has no chunks")
