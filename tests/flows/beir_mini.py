"""A small BEIR-layout set built from the sample evaluation set: 14 of its questions, the Python
reference topics they need plus distractors as corpus.jsonl, one unanswerable question, and one qrel
that names a document not in the corpus (the contract leaves it out)."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.evaluation.evalsets import BUNDLED

QUERIES = ["q01", "q03", "q05", "q08", "q09", "q13", "q17", "q18", "q20", "q22", "q25", "q28", "q35", "q40"]
DISTRACTORS = ["pydoc-numbers", "pydoc-lists", "pydoc-strings", "pydoc-calls", "pydoc-types", "pydoc-objects"]


def write_beir_mini(root: Path) -> Path:
    from pydoc_data.topics import topics

    (root / "qrels").mkdir(parents=True, exist_ok=True)
    queries = {q["_id"]: q for q in map(json.loads, (BUNDLED / "queries.jsonl").read_text().splitlines())}
    lines = (BUNDLED / "qrels" / "test.tsv").read_text().splitlines()[1:]
    qrels = [line.split("\t") for line in lines if line.split("\t")[0] in QUERIES]
    docs = sorted({d for _, d, _ in qrels} | set(DISTRACTORS))
    with (root / "corpus.jsonl").open("w") as fh:
        for d in docs:
            key = d.removeprefix("pydoc-")
            fh.write(json.dumps({"_id": d, "title": key.replace("-", " "), "text": topics[key]}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for q in [*QUERIES, "u01"]:
            fh.write(json.dumps(queries[q]) + "\n")
    rows = ["\t".join(r) for r in qrels] + ["q01\tpydoc-not-in-corpus\t1"]
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    (root / "answers.jsonl").write_text((BUNDLED / "answers.jsonl").read_text())
    return root


def write_feedback_export(root: Path, dest: Path) -> Path:
    """A `ragline feedback export` as users of ROOT's corpus would leave it: a question per topic,
    each answer rated up and citing that topic's document (BEIR layout plus ratings.jsonl)."""
    docs = [json.loads(line) for line in (root / "corpus.jsonl").read_text().splitlines()]
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    queries, qrels, ratings = [], [], []
    for i, doc in enumerate(docs):
        qid, question = f"fb-{i:03d}", f"What does the reference say about {doc['title']}?"
        queries.append({"_id": qid, "text": question, "rating": 1})
        qrels.append(f"{qid}\t{doc['_id']}\t1")
        ratings.append({"query_id": qid, "question": question, "rating": 1, "passages": []})
    (dest / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (dest / "ratings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ratings))
    (dest / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return dest
