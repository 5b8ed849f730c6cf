"""Every notebook runs top to bottom (a real Jupyter kernel) on the sample corpus, after the real
ingest → embed → evaluate → optimize flows have filled LanceDB and MLflow."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipelines.settings import Settings

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def sample_collection(settings: Settings, ray_session: None) -> str:
    from flows.evaluate import evaluate_flow
    from flows.optimize import optimize_flow
    from flows.refresh import refresh_flow
    from pipelines.sample import write_sample_corpus

    sources = write_sample_corpus(settings.root / "sample-corpus")
    refresh_flow([str(s) for s in sources], "sample")
    dataset = str(settings.root / "sample-corpus" / "eval")
    evaluate_flow("sample", dataset)
    optimize_flow("sample", dataset, trials=3, chunking=False)
    return "sample"


def test_there_are_three_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_explore_collection.ipynb",
        "02_compare_runs.ipynb",
        "03_ask.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, sample_collection: str) -> None:
    book = nbformat.read(path, as_version=4)
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    if path.stem != "03_ask":
        assert images, "plots are drawn inline"
    text = "".join(o.get("text", "") for o in outputs)
    assert "collection: sample" in text
