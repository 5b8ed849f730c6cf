"""Every benchmark takes --json and then ends with one JSON object of its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if "def main(" in p.read_text())


def test_there_are_benchmarks() -> None:
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_offers_json(script: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert "--json" in out.stdout


def test_json_is_the_last_line_of_a_real_run(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/embed_throughput.py", "--rows", "40", "--encoder-only", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["rows"] == 40
    assert figures["bare_rows_per_s"] > 0 and figures["forward_rows_per_s"] > 0
