"""The console script, as a user runs it (a real subprocess)."""

import subprocess
import sys


def _ragline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragline", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_commands_of_the_interface() -> None:
    r = _ragline("--help")
    assert r.returncode == 0
    for command in ("demo", "ingest", "embed", "refresh", "evaluate", "optimize", "serve", "chat", "up"):
        assert command in r.stdout


def test_evaluation_commands_explain_bad_arguments(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = _ragline("evaluate", "-c", "x", "--dataset", str(tmp_path / "nope"))
    assert r.returncode == 2 and "is not a folder" in r.stderr
    r = _ragline("optimize", "-c", "x", "--dataset", str(tmp_path), "--metric", "ndcg@7")
    assert r.returncode == 2 and "unknown --metric" in r.stderr
    r = _ragline("evaluate", "-c", "x", "--dataset", str(tmp_path), "--mode", "fuzzy")
    assert r.returncode == 2 and "unknown --mode" in r.stderr
    r = _ragline("evaluate", "-c", "x", "--dataset", str(tmp_path), "--answers", "--concurrency", "0")
    assert r.returncode == 2 and "--concurrency must be at least 1" in r.stderr


def test_missing_source_is_a_one_line_error() -> None:
    r = _ragline("ingest", "/no/such/path", "-c", "x")
    assert r.returncode == 2
    assert "does not exist" in r.stderr


def test_chat_without_a_service_explains() -> None:
    r = _ragline("chat", "hello", "--url", "http://127.0.0.1:9")
    assert r.returncode == 1
    assert "ragline serve" in r.stderr


def test_ingest_messy_folder_from_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os

    folder = tmp_path / "messy"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\nA fine document about rivers.")
    (folder / "empty.txt").write_text("")
    (folder / "blob.bin").write_bytes(b"\x00\x01\x02\x03")
    (folder / "latin1.txt").write_bytes(b"caf\xe9")
    (folder / "huge.txt").write_text("x" * 6_000_000)
    (folder / "rows.jsonl").write_text(
        '{"id": "a", "text": "row a"}\n{broken\n{"id": "a", "text": "again"}\n'
    )
    env = {**os.environ, "RAGLINE_DATA_DIR": str(tmp_path / "data")}

    def run() -> dict:
        r = subprocess.run(
            [sys.executable, "-m", "ragline", "ingest", str(folder), "-c", "cli", "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = run()
    assert first["inputs"] == first["documents"] + first["unchanged"] + first["quarantined"]
    assert (first["inputs"], first["documents"], first["quarantined"]) == (8, 2, 6)
    second = run()
    assert (second["documents"], second["unchanged"], second["quarantined"]) == (0, 2, 6)
