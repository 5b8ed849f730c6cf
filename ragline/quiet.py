"""Quiet by default: while a command runs, everything other programs write to this process's
stdout and stderr (Prefect's and Ray's loggers, Ray's C++ core, warnings, the temporary servers and
Ray processes this process starts, which inherit the descriptors) goes to a log file under the
data dir. Only ragline's own consoles, bound to copies of the original descriptors, reach the
terminal. `--verbose` leaves the descriptors alone."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType
from typing import IO

from rich.console import Console


class LibraryOutput:
    """Redirects descriptors 1 and 2 to LOG while open; OUT and ERR keep writing to the terminal."""

    def __init__(self, log: Path, out: Console, err: Console) -> None:
        self.log = log
        self.consoles = {1: out, 2: err}
        self._saved: dict[int, int] = {}
        self._files: list[IO[str]] = []

    def __enter__(self) -> LibraryOutput:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        target = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for fd, console in self.consoles.items():
            self._saved[fd] = os.dup(fd)
            # A console keeps its terminal (and its colours and width) through a copy of the fd.
            terminal = os.fdopen(os.dup(self._saved[fd]), "w", buffering=1, encoding="utf-8")
            self._files.append(terminal)
            console.file = terminal
            os.dup2(target, fd)
        os.close(target)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
            self.consoles[fd].file = sys.stdout if fd == 1 else sys.stderr
        self._saved.clear()
        for f in self._files:
            f.close()
        self._files.clear()

    @property
    def terminal(self) -> IO[str]:
        """Where ragline's own plain output (e.g. --json) goes while open."""
        return self.consoles[1].file
