"""LanceDB on object storage: an S3-compatible server on loopback (moto, request signing checked).
The store works there through settings' storage options, and what can go wrong (no bucket, a key
the server does not know, a wrong secret, no endpoint) is one line, from the library and from
the command line. The whole pipeline on S3 runs in tests/infra/test_ray_cluster.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.settings import Settings
from pipelines.store import Store, StoreUnavailableError
from tests.s3 import s3_server, storage_options

BUCKET = "ragline-store"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with s3_server(BUCKET) as env:
        yield env


def test_the_store_on_s3_with_storage_options_from_settings(s3: dict[str, str], tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, lancedb_uri=f"s3://{BUCKET}/lancedb", lancedb_storage_options=storage_options(s3)
    )
    store = Store.from_settings(settings)
    store.db.create_table("notes__documents", pa.table({"id": ["a", "b"], "text": ["otters", "kelp"]}))
    assert store.collections() == ["notes"]
    assert Store.from_settings(settings).documents("notes").count_rows() == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"uri": "s3://no-such-bucket/lancedb"}, "the bucket does not exist"),
        ({"aws_access_key_id": "AKIANOTKNOWN"}, "the access key is not known (AWS_ACCESS_KEY_ID)"),
        ({"aws_secret_access_key": "wrong"}, "the secret key is wrong (AWS_SECRET_ACCESS_KEY)"),
        ({"aws_endpoint": "http://127.0.0.1:9"}, "the endpoint refuses connections (AWS_ENDPOINT_URL)"),
    ],
)
def test_what_goes_wrong_is_one_line(s3: dict[str, str], change: dict[str, str], reason: str) -> None:
    uri = change.pop("uri", f"s3://{BUCKET}/lancedb")
    with pytest.raises(StoreUnavailableError) as err:
        Store(uri, storage_options={**storage_options(s3), **change})
    assert str(err.value) == f"LanceDB at {uri}: {reason}"


def test_a_command_with_a_wrong_secret_fails_with_one_line(s3: dict[str, str], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nSome text.")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env |= {**s3, "AWS_SECRET_ACCESS_KEY": "wrong", "RAGLINE_DATA_DIR": str(tmp_path / "data")}
    env["RAGLINE_LANCEDB_URI"] = f"s3://{BUCKET}/lancedb"
    for args in (["ingest", str(docs), "-c", "notes"], ["evaluate", "-c", "notes", "--dataset", str(docs)]):
        done = subprocess.run(
            [sys.executable, "-m", "ragline", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1, done.stdout + done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        expected = f"error: LanceDB at s3://{BUCKET}/lancedb: the secret key is wrong (AWS_SECRET_ACCESS_KEY)"
        assert lines == [expected], done.stderr
