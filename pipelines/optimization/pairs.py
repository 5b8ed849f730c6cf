"""Training pairs for fine-tuning the embedder on a collection: (question, passage that answers it,
a passage that looks close but does not), from three sources, each counted:

- `qrels`: the evaluation set's *search* split (never its held-out split): each question with the
  chunk of each relevant document that the current model finds closest to it;
- `feedback`: questions a user rated up, with the passages the answer cited (a feedback export);
- `synthetic`: built from the corpus alone, no hub model: a document's title -> its first chunk,
  and one sentence of a chunk -> the rest of that chunk (the inverse cloze task).

Hard negatives are mined from the current index: the closest chunk of another document.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl

from pipelines.evaluation.evalsets import EvalSet

Source = Literal["qrels", "feedback", "synthetic"]
SOURCES: tuple[Source, ...] = ("qrels", "feedback", "synthetic")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_MIN_WORDS = 6  # a shorter sentence or title says too little to be a question


class Encoder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Pair:
    anchor: str  # a question, or what stands for one
    positive: str  # the chunk text that answers it
    source: Source
    doc_id: str  # the positive's document: a negative never comes from it
    negative: str | None = None


@dataclass
class TrainingPairs:
    pairs: list[Pair] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(p.source for p in self.pairs)
        return {
            **{s: c.get(s, 0) for s in SOURCES},
            "total": len(self.pairs),
            "with_negative": sum(p.negative is not None for p in self.pairs),
        }

    def columns(self) -> dict[str, list[str]]:
        """The trainer's dataset: anchor, positive and negative columns of the pairs that have a
        hard negative (a pair has none only when one document holds every chunk); anchor and
        positive of all pairs when none has."""
        with_negative = [p for p in self.pairs if p.negative is not None]
        rows = with_negative or self.pairs
        cols = {"anchor": [p.anchor for p in rows], "positive": [p.positive for p in rows]}
        if with_negative:
            cols["negative"] = [p.negative or "" for p in rows]
        return cols

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {"anchor": p.anchor, "positive": p.positive, "negative": p.negative, "source": p.source}
            for p in self.pairs
        ]


def qrels_pairs(search_set: EvalSet, chunks: pl.DataFrame, encoder: Encoder) -> list[Pair]:
    """One pair per (question, relevant document) of SEARCH_SET: the document's chunk closest to
    the question. Refuses a held-out split: what scores the model must never train it."""
    if search_set.name.endswith(":holdout"):
        raise ValueError("training pairs never come from the held-out split")
    by_doc = {key[0]: g.sort("chunk_index") for key, g in chunks.group_by("doc_id", maintain_order=True)}
    out: list[Pair] = []
    for q in search_set.queries.iter_rows(named=True):
        for doc_id, relevance in search_set.qrels.get(q["_id"], {}).items():
            group = by_doc.get(doc_id)
            if relevance <= 0 or group is None:
                continue
            texts = group["text"].to_list()
            best = 0
            if len(texts) > 1:
                vectors = encoder.embed([q["text"], *texts])
                best = int(np.argmax(vectors[1:] @ vectors[0]))
            out.append(Pair(q["text"], texts[best], "qrels", doc_id))
    return out


def feedback_pairs(rated: Iterable[dict[str, Any]]) -> list[Pair]:
    """Rated answers of a feedback export ({"question", "rating", "passages": [{"doc_id", "text"}]}):
    a thumbs-up makes one pair per cited passage; a thumbs-down makes none (it counts against the
    passages in the export's qrels instead)."""
    out: list[Pair] = []
    for row in rated:
        if int(row.get("rating", 0)) <= 0:
            continue
        for passage in row.get("passages") or []:
            if passage.get("text"):
                out.append(Pair(row["question"], passage["text"], "feedback", str(passage.get("doc_id", ""))))
    return out


def synthetic_pairs(chunks: pl.DataFrame, limit: int, seed: int = 0) -> list[Pair]:
    """Pairs from the corpus alone: a document's title -> its first chunk (when the title is a
    phrase, not a file name), and one sentence -> the rest of its chunk. At most LIMIT, sampled
    evenly over the documents."""
    rng = random.Random(seed)
    titles: list[Pair] = []
    cloze: list[Pair] = []
    for row in chunks.sort(["doc_id", "chunk_index"]).iter_rows(named=True):
        text, title = row["text"], (row.get("title") or "").strip()
        if row["chunk_index"] == 0 and len(title.split()) >= 3 and "." not in title[-5:]:
            titles.append(Pair(title, text, "synthetic", row["doc_id"]))
        sentences = [s for s in _SENTENCE.split(text) if len(s.split()) >= _MIN_WORDS]
        if len(sentences) >= 3:
            i = rng.randrange(len(sentences))
            rest = " ".join(s for j, s in enumerate(sentences) if j != i)
            cloze.append(Pair(sentences[i], rest, "synthetic", row["doc_id"]))
    rng.shuffle(cloze)
    return (titles + cloze)[:limit] if limit > 0 else []


def mine_negatives(
    pairs: Sequence[Pair],
    encoder: Encoder,
    vectors: np.ndarray,
    texts: Sequence[str],
    doc_ids: Sequence[str],
    batch: int = 256,
) -> list[Pair]:
    """Each pair with a hard negative: the chunk of the current index (VECTORS, TEXTS, DOC_IDS, as
    the index holds them) closest to the anchor that belongs to another document."""
    if not pairs:
        return []
    docs = np.asarray(doc_ids)
    out: list[Pair] = []
    for start in range(0, len(pairs), batch):
        part = pairs[start : start + batch]
        scores = encoder.embed([p.anchor for p in part]) @ vectors.T
        for pair, row in zip(part, scores, strict=True):
            row[docs == pair.doc_id] = -np.inf
            j = int(np.argmax(row))
            negative = texts[j] if np.isfinite(row[j]) and texts[j] != pair.positive else None
            out.append(Pair(pair.anchor, pair.positive, pair.source, pair.doc_id, negative))
    return out


def build_pairs(
    chunks: pl.DataFrame,
    encoder: Encoder,
    index_rows: pl.DataFrame,
    *,
    search_set: EvalSet | None = None,
    rated: Iterable[dict[str, Any]] = (),
    synthetic: int = 2000,
    seed: int = 0,
) -> TrainingPairs:
    """All three sources, deduplicated, with hard negatives from INDEX_ROWS (id, doc_id, text,
    vector of the current index). Pairs without a negative keep in-batch negatives only."""
    pairs = [
        *(qrels_pairs(search_set, chunks, encoder) if search_set is not None else []),
        *feedback_pairs(rated),
        *synthetic_pairs(chunks, synthetic, seed),
    ]
    unique = list({(p.anchor, p.positive): p for p in pairs}.values())
    vectors = np.asarray(index_rows["vector"].to_list(), dtype=np.float32)
    texts, doc_ids = index_rows["text"].to_list(), index_rows["doc_id"].to_list()
    return TrainingPairs(mine_negatives(unique, encoder, vectors, texts, doc_ids))
