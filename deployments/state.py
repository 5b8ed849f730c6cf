"""What `ragline up` records about the stack it runs (`<data dir>/stack/state.json`), read back by
`ragline status` and by a second `ragline up` that must not start beside a live one."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from pipelines.settings import Settings


@dataclass
class Component:
    name: str
    url: str
    health: str
    pid: int | None = None
    started: float | None = None  # the process's start (`create_time`), so a reused pid is not mistaken
    log: str = ""


@dataclass
class State:
    stack_id: str
    pid: int
    started: float
    started_at: str
    data_dir: str
    phase: str  # starting | running | stopping
    components: list[Component] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> State | None:
        try:
            raw = json.loads(path.read_text())
            raw["components"] = [Component(**c) for c in raw["components"]]
            return cls(**raw)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


def state_path(settings: Settings) -> Path:
    return settings.root / "stack" / "state.json"


def process_alive(pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.Error:
        return False
    now = create_time(pid)
    return started is None or (now is not None and abs(now - started) < 1)


def create_time(pid: int) -> float | None:
    """When the process started. On Linux: seconds after boot, from /proc. psutil's wall-clock
    create time adds the boot time, which moves when the clock is stepped (a VM paused and
    resumed, NTP): a live `ragline up` then read as dead in CI."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime in clock ticks
    except (OSError, IndexError, ValueError):
        pass
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def running_stack(settings: Settings) -> State | None:
    """The `ragline up` that runs now on this data dir, if any."""
    state = State.read(state_path(settings))
    if state is None or state.phase != "running" or not process_alive(state.pid, state.started):
        return None
    return state


def stack_prefect_api(settings: Settings) -> str | None:
    """The API of the Prefect server of a running `ragline up` on this data dir: the commands
    record their flow runs there, so one history shows every run."""
    state = running_stack(settings)
    prefect = next((c for c in state.components if c.name == "prefect"), None) if state else None
    return f"{prefect.url}/api" if prefect else None
