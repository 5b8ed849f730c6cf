"""Evaluation sets in the BEIR layout (INTERFACE.md), and a starter set written from a collection.

    DIR/corpus.jsonl      {"_id", "title", "text"}   (optional here: the collection holds the corpus)
    DIR/queries.jsonl     {"_id", "text", "metadata"?}
    DIR/qrels/test.tsv    query-id <TAB> corpus-id <TAB> score, with a header line
    DIR/answers.jsonl     {"_id", "answer"}          (optional: reference answers; "answer" may be a
                                                     list, or "answers" a list, of accepted answers)

Queries without any qrel are *unanswerable* from the corpus: the answer metrics expect a refusal.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipelines.sample import SAMPLE_EVAL

Split = Literal["all", "search", "holdout"]
SPLITS: tuple[Split, ...] = ("all", "search", "holdout")
BUNDLED = SAMPLE_EVAL  # the sample corpus's hand-checked set


class EvalSetError(ValueError):
    pass


@dataclass
class EvalSet:
    name: str
    path: Path
    queries: pl.DataFrame  # _id, text, synthetic
    qrels: dict[str, dict[str, int]]  # query id -> {document id: relevance}
    answers: dict[str, list[str]] = field(default_factory=dict)  # query id -> accepted answers
    corpus_ids: list[str] | None = None  # from corpus.jsonl, when the folder has one

    @property
    def digest(self) -> str:
        """Content hash: two runs compare only when they were scored on the same set."""
        h = hashlib.sha256()
        for row in self.queries.sort("_id").iter_rows(named=True):
            h.update(f"{row['_id']}\x00{row['text']}\x00".encode())
        for qid in sorted(self.qrels):
            h.update(json.dumps([qid, sorted(self.qrels[qid].items())]).encode())
        return h.hexdigest()[:16]

    @property
    def qrels_frame(self) -> pl.DataFrame:
        rows = [(q, d, s) for q, docs in self.qrels.items() for d, s in docs.items()]
        return pl.DataFrame(rows, schema=["query-id", "corpus-id", "score"], orient="row")

    def split(self, which: Split, holdout_share: float = 0.4) -> EvalSet:
        """A stable split by query id: `search` is what the optimizer may look at, `holdout` is not."""
        if which == "all":
            return self
        if not 0 < holdout_share < 1:
            raise ValueError("holdout_share must be between 0 and 1")
        cut = int(holdout_share * 1000)
        bucket = pl.col("_id").map_elements(_bucket, return_dtype=pl.Int64)
        keep = bucket < cut if which == "holdout" else bucket >= cut
        queries = self.queries.filter(keep)
        ids = set(queries["_id"].to_list())
        return EvalSet(
            f"{self.name}:{which}",
            self.path,
            queries,
            {q: d for q, d in self.qrels.items() if q in ids},
            {q: a for q, a in self.answers.items() if q in ids},
            self.corpus_ids,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queries": self.queries.height,
            "answerable": sum(1 for q in self.queries["_id"] if self.qrels.get(q)),
            "qrels": sum(len(d) for d in self.qrels.values()),
            "synthetic": int(self.queries["synthetic"].sum()),
            "digest": self.digest,
        }


def _bucket(query_id: str) -> int:
    return int(hashlib.sha1(query_id.encode()).hexdigest()[:8], 16) % 1000


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}:{n}: not JSON ({exc.msg})") from exc
    return rows


def _accepted(row: dict[str, Any]) -> list[str]:
    """The accepted answers of one answers.jsonl row: "answer" (a string or a list) or "answers"."""
    value = row.get("answers", row.get("answer"))
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def read_raw(
    path: str | Path,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, list[str]], list[str] | None]:
    """The folder's tables as read, before any contract: (queries, qrels, answers, corpus ids)."""
    root = Path(path)
    if not root.is_dir():
        raise EvalSetError(f"evaluation set {root} is not a folder (BEIR: queries.jsonl, qrels/test.tsv)")
    qfile, rfile = root / "queries.jsonl", root / "qrels" / "test.tsv"
    for f in (qfile, rfile):
        if not f.is_file():
            raise EvalSetError(f"evaluation set {root} has no {f.relative_to(root)}")
    raw = _jsonl(qfile)
    queries = pl.DataFrame(
        {
            "_id": [None if r.get("_id") is None else str(r["_id"]) for r in raw],
            "text": [r.get("text") for r in raw],
            "synthetic": [bool((r.get("metadata") or {}).get("synthetic", False)) for r in raw],
        },
        schema={"_id": pl.String, "text": pl.String, "synthetic": pl.Boolean},
    )
    try:
        qrels = pl.read_csv(
            rfile,
            separator="\t",
            schema_overrides={"query-id": pl.String, "corpus-id": pl.String, "score": pl.Int64},
        )
    except Exception as exc:
        raise EvalSetError(f"{rfile}: not a query-id/corpus-id/score TSV with a header ({exc})") from exc
    missing = {"query-id", "corpus-id", "score"} - set(qrels.columns)
    if missing:
        raise EvalSetError(f"{rfile}: missing columns {sorted(missing)} (header: query-id corpus-id score)")
    answers_file = root / "answers.jsonl"
    answers = (
        {str(r["_id"]): accepted for r in _jsonl(answers_file) if (accepted := _accepted(r))}
        if answers_file.is_file()
        else {}
    )
    corpus_file = root / "corpus.jsonl"
    corpus_ids = [str(r.get("_id")) for r in _jsonl(corpus_file)] if corpus_file.is_file() else None
    return queries, qrels, answers, corpus_ids


def build(
    path: str | Path,
    queries: pl.DataFrame,
    qrels: pl.DataFrame,
    answers: dict[str, list[str]],
    corpus_ids: list[str] | None,
) -> EvalSet:
    """An EvalSet from validated tables (the flow validates them with the eval data contracts)."""
    mapping: dict[str, dict[str, int]] = {}
    for q, d, s in qrels.select("query-id", "corpus-id", "score").iter_rows():
        if s > 0:  # BEIR: score 0 means judged not relevant
            mapping.setdefault(q, {})[d] = int(s)
    root = Path(path)
    return EvalSet(root.name, root, queries, mapping, answers, corpus_ids)


# --- a starter set written from a collection's chunks -------------------------------------------
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = frozenset(
    str.split(
        "the a an and or of to in is are was were be been it its this that these those for on with as by at "
        "from which can not but if then than there their they them such also may must will into each any "
        "all one two when where what how who does do has have had more most other some so only"
    )
)


def _key_phrase(sentence: str) -> str | None:
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]+", sentence)
    content = [w for w in words if w.lower() not in _STOP and len(w) > 2]
    return " ".join(content[:6]) if len(content) >= 3 else None


def starter_set(chunks: pl.DataFrame, dest: str | Path, n: int = 50, seed: int = 0) -> Path:
    """Write a synthetic BEIR set: one question per sampled chunk, made by rule from the chunk's title
    and a content sentence; the chunk's document is the relevant one. Marked `synthetic` in each
    query's metadata, so reports can keep them apart from hand-checked queries. A starting point
    to review by hand, not ground truth."""
    dest = Path(dest)
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    sample = chunks.filter(pl.col("token_count") >= 20) if "token_count" in chunks.columns else chunks
    sample = sample.sample(n=min(n, sample.height), seed=seed, shuffle=True) if sample.height else sample
    queries, qrels = [], []
    for i, row in enumerate(sample.iter_rows(named=True)):
        sentences = [s for s in _SENTENCE.split(row["text"].replace("\n", " ")) if len(s.split()) >= 6]
        phrase = next((p for s in sentences if (p := _key_phrase(s))), None)
        if phrase is None:
            continue
        title = (row.get("title") or "").strip()
        text = f"What does {title} say about {phrase}?" if title else f"What is said about {phrase}?"
        qid = f"syn{i:04d}"
        queries.append({"_id": qid, "text": text, "metadata": {"synthetic": True, "chunk_id": row["id"]}})
        qrels.append(f"{qid}\t{row['doc_id']}\t1")
    with (dest / "queries.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
    header = "query-id\tcorpus-id\tscore\n"
    (dest / "qrels" / "test.tsv").write_text(header + "".join(f"{r}\n" for r in qrels))
    return dest
