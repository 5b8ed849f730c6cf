"""`ragline up` refuses to start, with a one-line reason and nothing left behind, when it cannot own
its ports or its data dir; `ragline status` says when nothing runs. No component is started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from deployments.state import State, create_time
from tests.conftest import free_port


def _ragline(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAGLINE_DATA_DIR": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "ragline", *args], env=env, capture_output=True, text=True, timeout=120
    )


def _ports() -> list[str]:
    return [f"--{n}-port={free_port()}" for n in ("prefect", "mlflow", "serve", "dashboard")]


def _errors(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("error: ")]


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _ragline(tmp_path, "up", *_ports(), f"--mlflow-port={port}")
    assert r.returncode == 1
    assert _errors(r) == [f"error: port {port} (MLflow) is in use on 127.0.0.1"], r.stderr
    assert not (tmp_path / "stack" / "state.json").exists()


def test_a_second_up_for_one_data_dir_is_refused_and_leaves_the_first_alone(tmp_path: Path) -> None:
    state_file = tmp_path / "stack" / "state.json"
    state_file.parent.mkdir(parents=True)
    me = psutil.Process()  # stands in for a running `ragline up`
    first = State("f" * 32, me.pid, create_time(me.pid) or 0.0, "now", str(tmp_path), "running")
    first.write(state_file)
    r = _ragline(tmp_path, "up", *_ports())
    assert r.returncode == 1
    assert _errors(r) == [f"error: `ragline up` already runs for {tmp_path} (pid {me.pid})"], r.stderr
    assert json.loads(state_file.read_text())["stack_id"] == "f" * 32


def test_status_without_a_stack_says_so(tmp_path: Path) -> None:
    r = _ragline(tmp_path, "status", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout) == {
        "running": False,
        "healthy": False,
        "data_dir": str(tmp_path),
        "components": [],
    }
