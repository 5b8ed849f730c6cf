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


def test_unbuilt_commands_say_so_and_fail() -> None:
    r = _ragline("evaluate", "-c", "x", "--dataset", ".")
    assert r.returncode == 2
    assert "not built yet" in r.stderr


def test_missing_source_is_a_one_line_error() -> None:
    r = _ragline("ingest", "/no/such/path", "-c", "x")
    assert r.returncode == 2
    assert "does not exist" in r.stderr


def test_chat_without_a_service_explains() -> None:
    r = _ragline("chat", "hello", "--url", "http://127.0.0.1:9")
    assert r.returncode == 1
    assert "ragline serve" in r.stderr
