"""A real `ragline embed` run killed half-way (SIGKILL to its whole process group, Ray included)
and started again ends with every chunk embedded exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from benchmarks.corpus import chunk_frame, passages
from pipelines.ingest import tables as ingest
from pipelines.settings import Settings
from pipelines.store import Store

ROWS = 1200


def _cli_env(settings: Settings) -> dict[str, str]:
    # Its own data dir (Prefect home, Ray) but the same LanceDB as the test.
    data = tempfile.mkdtemp(prefix="rl-cli-")
    return {
        **os.environ,
        "RAGLINE_DATA_DIR": data,
        "RAGLINE_LANCEDB_URI": settings.lancedb_location,
        "PREFECT_HOME": f"{data}/prefect",
    }


def _index_rows(store: Store, collection: str) -> int:
    names = [n for n in store._names() if n.startswith(f"{collection}__index_")]
    if not names:
        return 0
    try:
        return store.db.open_table(names[0]).count_rows()
    except ValueError:  # listed while being created: its folder exists before its first version
        return 0


def _json_line(stdout: str) -> dict:
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("{")))


@pytest.mark.timeout(600)
def test_killed_embed_run_resumes_exactly_once(settings: Settings) -> None:
    store = Store(settings.lancedb_location)
    ingest.write_chunks(store, "resume", [], chunk_frame(passages(ROWS, max_chars=300), prefix="r"))
    env = _cli_env(settings)
    cmd = [sys.executable, "-m", "ragline", "embed", "-c", "resume", "--json"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while (written := _index_rows(store, "resume")) == 0:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "no rows were written in time"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2)
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if env["RAGLINE_DATA_DIR"] in " ".join(p.info["cmdline"] or [])
    ]
    for p in leftovers:
        p.kill()
    assert not leftovers, "the killed run left processes behind"

    partial = _index_rows(store, "resume")
    assert 0 < written <= partial < ROWS, (written, partial)

    done = subprocess.run(cmd, env=_cli_env(settings), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    result = _json_line(done.stdout)
    assert result["embedded"] == ROWS - partial and result["skipped"] == partial
    assert {"collection", "model", "rows_per_s", "table", "table_version", "flow_run_id"} <= set(result)
    ids = store.active_index("resume").to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids)) == ROWS  # every chunk exactly once
