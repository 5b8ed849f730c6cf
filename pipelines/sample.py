"""The bundled sample corpus: a few Markdown, HTML and text files, plus Python's own
language-reference topics (`pydoc_data.topics`, present on every Python install) as JSONL."""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path

DEMO_QUESTION = "What is the with statement used for in Python?"
SAMPLE_EVAL = Path(__file__).parent / "sample_eval"  # BEIR layout; qrels name pydoc topics


def write_sample_corpus(dest: Path, include_python_reference: bool = True) -> list[Path]:
    """Write the corpus under DEST and return the sources to ingest (a folder and a JSONL file)."""
    docs = dest / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    bundled = files("pipelines") / "sample_corpus"
    for entry in bundled.iterdir():
        if entry.is_file():
            with entry.open("rb") as src, (docs / entry.name).open("wb") as out:
                shutil.copyfileobj(src, out)
    sources = [docs]
    if include_python_reference:
        from pydoc_data.topics import topics

        jsonl = dest / "python-reference.jsonl"
        with jsonl.open("w", encoding="utf-8") as fh:
            for key in sorted(topics):
                record = {"_id": f"pydoc-{key}", "title": _title(key), "text": topics[key], "topic": key}
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        sources.append(jsonl)
    write_sample_evalset(dest / "eval")
    return sources


def write_sample_evalset(dest: Path) -> Path:
    """The hand-checked evaluation set of the sample corpus (BEIR layout; qrels name pydoc topics)."""
    bundled = SAMPLE_EVAL
    for rel in ("queries.jsonl", "answers.jsonl", "qrels/test.tsv", "README.md"):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((bundled / rel).read_bytes())
    return dest


def _title(key: str) -> str:
    return "Python reference: " + key.replace("-", " ")
