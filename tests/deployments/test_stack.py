"""`ragline up` as a user runs it (a real subprocess, free ports, a throwaway data dir): every
component healthy and listening on loopback, the deployments of prefect.yaml registered, one
Prefect history (a command's flow run from before `ragline up` and one made while it runs), a
scheduled run created by the server's scheduler and completed by the worker, then Ctrl-C leaves
no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
import yaml

from deployments.processes import stack_processes, sweep
from deployments.stack import PROJECT_DIR
from deployments.state import State
from pipelines.settings import Settings
from pipelines.store import Store
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

# Set by the test session's configure(); `ragline up` must derive them from its own data dir.
_INHERITED = ("MLFLOW_TRACKING_URI", "PREFECT_HOME", "PREFECT_API_URL", "RAY_ADDRESS", "RAGLINE_LANCEDB_URI")


def user_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED}
    return env | {
        "RAGLINE_DATA_DIR": str(data),
        "RAGLINE_GENERATOR": "none",  # the generator's model load is tested elsewhere
        # Quick loops so a schedule turns into a run, and the run is picked up, in seconds.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }


def run_ingest(env: dict[str, str], docs: Path, collection: str) -> subprocess.CompletedProcess[str]:
    """`ragline ingest` as a user types it beside (or before) `ragline up`."""
    cmd = [sys.executable, "-m", "ragline", "ingest", str(docs), "-c", collection, "--json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


class Up:
    """A running `ragline up` and what it printed."""

    def __init__(self, data: Path, ports: dict[str, int]) -> None:
        self.data = data
        self.ports = ports
        self.env = env = user_env(data)
        self.before = ""  # what the command run before `ragline up` printed
        args = [f"--{name}-port={port}" for name, port in ports.items()]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ragline", "up", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # like a terminal: SIGINT reaches `ragline up` alone
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def output(self) -> str:
        return "\n".join(self.lines)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any("Ctrl-C to stop" in line for line in self.lines):
            assert self.proc.poll() is None, f"ragline up exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"not ready in time:\n{self.output()}\n{self.logs()}"
            time.sleep(1)

    def logs(self, lines: int = 15) -> str:
        parts = []
        for log in sorted((self.data / "stack" / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def status(self) -> tuple[int, dict[str, Any]]:
        r = subprocess.run(
            [sys.executable, "-m", "ragline", "status", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "otters.md").write_text("# Otters\n\nSea otters hold hands while they sleep.")
    (docs / "kelp.md").write_text("# Kelp\n\nKelp forests grow up to half a metre a day.")
    return docs


@pytest.fixture
def stack(docs: Path) -> Iterator[Up]:
    data = Path(tempfile.mkdtemp(prefix="rlu-"))  # short: Ray's socket paths live below it
    # A flow run from before `ragline up`: the command's temporary Prefect server records it.
    before = run_ingest(user_env(data), docs, "before")
    up = Up(data, {name: free_port() for name in ("prefect", "mlflow", "serve", "dashboard")})
    up.before = before.stdout + before.stderr
    yield up
    if up.proc.poll() is None:  # the test failed before its own Ctrl-C
        up.proc.send_signal(signal.SIGINT)
        try:
            up.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            up.proc.kill()
    state = State.read(data / "stack" / "state.json")
    if state is not None:
        sweep(state.stack_id)
    shutil.rmtree(data, ignore_errors=True)


def _api(up: Up, method: str, path: str, body: Any = None) -> Any:
    # Prefect's server answers 503 while its SQLite database is locked by the scheduler's or the
    # worker's write; Prefect's own client retries those (PREFECT_CLIENT_MAX_RETRIES), and so does this.
    for wait in (1, 2, 4, 8, 0):
        r = httpx.request(method, f"{up.url('prefect')}/api{path}", json=body, timeout=30)
        if r.status_code != 503 or not wait:
            break
        time.sleep(wait)
    assert r.status_code < 300, (path, r.status_code, r.text)
    return r.json() if r.content else None


def _deployment(up: Up, name: str) -> dict[str, Any]:
    found = _api(up, "POST", "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    assert len(found) == 1, found
    return found[0]


def _wait_completed_scheduled_run(up: Up, deployment_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
        runs = _api(up, "POST", "/flow_runs/filter", query)
        done = [r for r in runs if r["auto_scheduled"] and r["state_type"] == "COMPLETED"]
        if done:
            return done[0]
        failed = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
        assert not failed, f"{failed[0]['state']}\n{up.logs(40)}"
        assert time.monotonic() < deadline, f"no completed scheduled run: {runs}\n{up.logs(40)}"
        time.sleep(2)


def _expected_deployments() -> set[str]:
    spec = yaml.safe_load((PROJECT_DIR / "prefect.yaml").read_text())
    return {d["name"] for d in spec["deployments"] if (PROJECT_DIR / d["entrypoint"].split(":")[0]).is_file()}


def _listeners(stack_id: str) -> list[tuple[str, int, str, str]]:
    """(address, port, process name, command line) of every socket the stack's processes listen on."""
    found = []
    for p in stack_processes(stack_id):
        try:
            cmd = " ".join(p.cmdline())
            for c in p.net_connections("inet"):
                if c.status == psutil.CONN_LISTEN:
                    found.append((c.laddr.ip, c.laddr.port, p.name(), cmd))
        except psutil.Error:
            continue
    return found


def _screenshot_prefect_runs(up: Up, run_name: str) -> None:
    """The Prefect UI of `ragline up` lists the commands' flow runs, in a real browser
    (test-artifacts/prefect-runs.png, the README's picture)."""
    from playwright.sync_api import sync_playwright

    from tests.serving.browser import ARTIFACTS, launch

    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{up.url('prefect')}/runs", wait_until="networkidle")
        try:
            page.get_by_text(run_name).first.wait_for(timeout=60_000)
        finally:  # on a timeout too: the picture says what the page showed
            page.screenshot(path=str(ARTIFACTS / "prefect-runs.png"), full_page=True)
            browser.close()


@pytest.mark.timeout(900)
def test_up_runs_the_stack_a_scheduled_flow_and_stops_clean(stack: Up, docs: Path) -> None:
    began = time.monotonic()
    stack.wait_ready(timeout_s=600)
    print(f"ragline up: all healthy after {time.monotonic() - began:.0f} s")

    # Every component answers, and `ragline status` says so.
    rc, status = stack.status()
    why = f"{status}\nragline up: {stack.proc.poll()}\n{stack.output()}\n{stack.logs()}"
    assert rc == 0 and status["healthy"], why
    assert {c["name"] for c in status["components"]} == {"prefect", "mlflow", "ray", "worker", "serve"}
    assert httpx.get(f"{stack.url('mlflow')}/health", timeout=10).status_code == 200
    assert (stack.data / "mlflow" / "mlflow.db").is_file()  # the store the flows write
    assert httpx.get(f"{stack.url('dashboard')}/api/gcs_healthz", timeout=10).status_code == 200
    assert httpx.get(f"{stack.url('serve')}/healthz", timeout=10).status_code == 200
    # Auth is on by default: an API route without a key is refused.
    search = httpx.post(f"{stack.url('serve')}/v1/search", json={"query": "x"}, timeout=30)
    assert search.status_code == 401, search.text

    # Loopback means loopback: what `ragline up` opens (each component's port, the worker's health
    # port) and every HAProxy listener (Serve's proxy, its metrics and stats) is on 127.0.0.1.
    # Ray's own servers bind what Ray 2.60 binds (README): listed, not asserted.
    state = State.read(stack.data / "stack" / "state.json")
    assert state is not None
    loopback = {"127.0.0.1", "::ffff:127.0.0.1"}
    listening = _listeners(state.stack_id)
    haproxy = [(ip, port) for ip, port, name, _ in listening if name == "haproxy"]
    assert len(haproxy) >= 3 and {ip for ip, _ in haproxy} <= loopback, haproxy
    for c in state.components:
        port = urlsplit(c.health).port
        ips = {ip for ip, p, *_ in listening if p == port}
        assert ips and ips <= loopback, (c.name, port, ips)
    elsewhere = sorted({(ip, name, cmd[:60]) for ip, _, name, cmd in listening if ip not in loopback})
    print(f"ragline up: {len(listening) - len(elsewhere)} listeners on loopback; elsewhere: {elsewhere}")

    # prefect.yaml's deployments are registered on the stack's server.
    names = {d["name"] for d in _api(stack, "POST", "/deployments/filter", {})}
    assert names == _expected_deployments(), names

    # One history: the command's run from before `ragline up` is on the stack's server, and a
    # command run now records its flow run there (no temporary server of its own).
    def ingest_runs() -> dict[str, str]:
        runs = _api(stack, "POST", "/flow_runs/filter", {"flows": {"name": {"any_": ["ingest"]}}})
        return {r["parameters"].get("collection"): r["name"] for r in runs if r["state_type"] == "COMPLETED"}

    assert "before" in ingest_runs()
    log = stack.data / "logs" / "ingest.log"  # quiet: Prefect's lines are in the command's log
    assert "temporary server" in log.read_text().lower(), stack.before
    logged = log.stat().st_size
    during = run_ingest(stack.env, docs, "during")
    assert "temporary server" not in log.read_bytes()[logged:].decode().lower(), during.stderr
    runs = ingest_runs()
    assert {"before", "during"} <= set(runs)
    _screenshot_prefect_runs(stack, runs["before"])

    # A schedule on the cheap `ingest` deployment: the scheduler creates the run, the worker runs it.
    _api(stack, "PATCH", f"/deployments/{_deployment(stack, 'refresh-sample')['id']}", {"paused": True})
    ingest = _deployment(stack, "ingest")
    params = {"sources": [str(docs)], "collection": "uptest"}
    _api(stack, "PATCH", f"/deployments/{ingest['id']}", {"parameters": params, "concurrency_limit": 1})
    anchor = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    schedule = {"schedule": {"interval": 20, "anchor_date": anchor}, "active": True}
    _api(stack, "POST", f"/deployments/{ingest['id']}/schedules", [schedule])
    run = _wait_completed_scheduled_run(stack, ingest["id"], timeout_s=420)
    _api(stack, "PATCH", f"/deployments/{ingest['id']}", {"paused": True})
    assert run["infrastructure_pid"], run  # started by the process worker
    # ... on the stack's data dir.
    assert Store(str(stack.data / "lancedb")).documents("uptest").count_rows() == 2

    # Ctrl-C: everything of the stack stops, grandchildren included.
    pids = [c.pid for c in state.components if c.pid]
    assert len(stack_processes(state.stack_id)) > len(pids)  # the sweep below looks at real processes
    began = time.monotonic()
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=180) == 0, stack.output()
    print(f"ragline up: stopped {time.monotonic() - began:.0f} s after SIGINT")
    assert not stack_processes(state.stack_id)
    in_sessions = []
    for p in psutil.process_iter():
        try:
            # Zombies are dead: orphans wait there until init reaps them.
            if os.getsid(p.pid) in pids and p.status() != psutil.STATUS_ZOMBIE:
                in_sessions.append(p)
        except (OSError, psutil.Error):
            continue
    assert not in_sessions, in_sessions
    for marker in (str(stack.data), str(Settings(data_dir=stack.data).ray_temp_dir)):
        left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
        assert left.stdout == "", left.stdout
    rc, status = stack.status()
    assert rc == 1 and not status["running"], status
