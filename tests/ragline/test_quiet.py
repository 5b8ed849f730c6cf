"""Quiet by default: what other code writes to the process's stdout and stderr (Python loggers, C
libraries writing to the descriptors, child processes that inherit them) goes to the log file, and
only ragline's consoles reach the terminal; verbose leaves everything on the terminal. Run in a
subprocess, so the descriptors are a real process's (the demo itself: test_commands.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import logging, os, subprocess, sys
from pathlib import Path
from ragline.console import err, out
from ragline.quiet import LibraryOutput

def noise():
    logging.getLogger("prefect").warning("a library's WARNING line")
    os.write(2, b"E core_worker.cc: a C++ line\\n")
    print("a library's print")
    subprocess.run(["sh", "-c", "echo a child process line; echo its stderr >&2"], check=True)

logging.basicConfig(level=logging.INFO)
verbose = sys.argv[2] == "verbose"
if verbose:
    out.print("ours: stage 1")
    noise()
else:
    with LibraryOutput(Path(sys.argv[1]), out, err) as quiet:
        out.print("ours: stage 1")
        noise()
        err.print("ours: a real problem")
        print('{"json": 1}', file=quiet.terminal)
out.print("ours: done")
"""
FOREIGN = ("WARNING line", "core_worker", "library's print", "child process line", "its stderr")


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_other_programs_output_goes_to_the_log_unless_verbose(tmp_path: Path, mode: str) -> None:
    log = tmp_path / "logs" / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log), mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    terminal = done.stdout + done.stderr
    assert "ours: stage 1" in done.stdout and "ours: done" in done.stdout
    if mode == "quiet":
        assert not [m for m in FOREIGN if m in terminal], terminal
        assert "ours: a real problem" in done.stderr  # a real problem still shows
        assert '{"json": 1}' in done.stdout
        written = log.read_text()
        assert all(m in written for m in FOREIGN), written
        assert "ours:" not in written
    else:
        assert all(m in terminal for m in FOREIGN), terminal
        assert not log.exists()
