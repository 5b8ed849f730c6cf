"""Child processes of `ragline up`: each in its own session, stamped with the stack's id, stopped as
a whole tree. Ray, the Prefect worker and MLflow all start grandchildren; some of those leave the
parent's process group, so the last sweep goes by the id every descendant inherits in its
environment."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

# Every process of one stack inherits this variable; its value is the stack's id.
STACK_ENV = "RAGLINE_STACK_ID"


class StartError(RuntimeError):
    """A component could not start; the message is one line, naming its log."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    grace_s: float = 20.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def last_line(self) -> str:
        try:
            lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1].strip()[:300] if lines else ""


def spawn(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    cwd: Path | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    grace_s: float = 20.0,
) -> Child:
    """Start CMD in a new session (so a terminal's Ctrl-C reaches only the supervisor, which stops
    the children in order), output appended to LOG."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, proc, log, stop_signal, grace_s)


def wait_healthy(url: str, children: Iterable[Child], timeout_s: float, what: str) -> None:
    """Poll URL until it answers 200; fail early if a child it depends on exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if healthy(url):
            return
        for child in children:
            if not child.alive():
                raise StartError(
                    f"{child.name} exited with status {child.proc.returncode} while starting: "
                    f"{child.last_line()} (log: {child.log})"
                )
        if time.monotonic() > deadline:
            raise StartError(f"{what} did not answer {url} within {timeout_s:.0f} s")
        time.sleep(0.5)


def healthy(url: str, timeout_s: float = 3.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def stop(children: list[Child]) -> None:
    """Signal CHILDREN together, wait up to each one's grace period, then kill what is left of
    their sessions."""
    for child in children:
        if child.alive():
            _signal(child.pid, child.stop_signal)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=child.grace_s)
    for child in children:
        kill_session(child.pid)
        if child.alive():
            child.proc.wait()


def kill_session(sid: int) -> None:
    """SIGKILL every process of session SID (a child's group and anything that left it)."""
    _killpg(sid, signal.SIGKILL)
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                p.kill()
        except (OSError, psutil.Error):
            continue


def stack_processes(stack_id: str) -> list[psutil.Process]:
    """Live processes that carry STACK_ID in their environment (zombies excluded)."""
    found = []
    for p in psutil.process_iter():
        try:
            mine = p.pid != os.getpid() and p.environ().get(STACK_ENV) == stack_id
            if mine and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


def sweep(stack_id: str) -> list[int]:
    """Kill whatever of the stack survived its children's shutdown; returns their pids."""
    left = stack_processes(stack_id)
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(left, timeout=5)
    return [p.pid for p in left]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
