"""Honest refusal: when retrieval finds nothing that answers the question, say that the sources do
not say, list the closest sources, and do not call the model.

The evidence is the query's best cosine similarity to a retrieved passage (vector and hybrid
search). Its threshold is learned per collection from the evaluation set's unanswerable questions
(`calibrate`, stored with the champion config), never hard-coded: embedders and corpora differ.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Fixed and detectable: the answer metrics count it as a refusal (evaluation/answer_metrics.py).
REFUSAL_ANSWER = "The sources do not say. The closest passages found are listed as sources."
MAX_FALSE_REFUSAL = 0.15  # at most this share of answerable questions may be refused
# all-MiniLM-L6-v2: paraphrases score ~0.7-0.9, unrelated text ~0.0-0.3. Used for relevance labels
# only, and only when the collection has no calibrated threshold.
DEFAULT_MIN_SIMILARITY = 0.45


def evidence(hits: Sequence[Any]) -> float | None:
    """The best similarity of the query to a retrieved passage; None when no hit has one (text
    search only), and then refusal never applies."""
    values = [s for h in hits if (s := _similarity(h)) is not None]
    return max(values) if values else None


def _similarity(hit: Any) -> float | None:
    return hit.get("similarity") if isinstance(hit, dict) else getattr(hit, "similarity", None)


def refuses(hits: Sequence[Any], min_similarity: float | None) -> bool:
    """Whether the question is refused without calling the model."""
    if min_similarity is None:
        return False
    best = evidence(hits)
    return best is not None and best < min_similarity


def calibrate(
    answerable: Sequence[float], unanswerable: Sequence[float], max_false_refusal: float = MAX_FALSE_REFUSAL
) -> float | None:
    """The threshold that refuses the most unanswerable questions while refusing at most
    MAX_FALSE_REFUSAL of the answerable ones (best evidence of each question); None when the set has
    no unanswerable questions or no threshold refuses any of them within that limit."""
    a, u = np.asarray(answerable, dtype=float), np.asarray(unanswerable, dtype=float)
    if not a.size or not u.size:
        return None
    values = np.unique(np.concatenate([a, u]))
    cuts = (values[:-1] + values[1:]) / 2  # between observed values: robust to ties
    best: tuple[float, float] | None = None
    for t in cuts:
        false_refusal, refusal = float((a < t).mean()), float((u < t).mean())
        if false_refusal <= max_false_refusal and refusal > 0:
            gain = refusal - false_refusal
            if best is None or gain > best[0]:
                best = (gain, float(t))
    return None if best is None else round(best[1], 4)


def cross_fitted(
    evidence: Mapping[str, float | None], answerable: set[str], folds: int = 5
) -> dict[str, float | None]:
    """Each question's threshold, learned (`calibrate`) from the questions of the other folds, never
    from its own label: an evaluation of a collection that has no threshold yet scores refusal as
    serving will refuse once it has learned one, without grading a question on its own answer key.
    Folds by a stable hash of the question id, so a rerun gets the same thresholds."""
    fold = {q: zlib.crc32(q.encode()) % folds for q in evidence}
    out: dict[str, float | None] = {}
    for f in range(folds):
        known = [(q, e) for q, e in evidence.items() if fold[q] != f and e is not None]
        yes, no = [e for q, e in known if q in answerable], [e for q, e in known if q not in answerable]
        threshold = calibrate(yes, no)
        out |= {q: threshold for q in evidence if fold[q] == f}
    return out


def relevance(similarity: float | None, min_similarity: float | None) -> str | None:
    """A label a person reads, relative to the collection's refusal threshold: "high", "medium"
    (enough to answer from), "low" (below it); None without a similarity (text search)."""
    if similarity is None:
        return None
    t = DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity
    return "high" if similarity >= t + 0.15 else "medium" if similarity >= t else "low"
