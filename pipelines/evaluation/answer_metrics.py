"""Answer metrics that need no judge model, so they run offline on any machine:

- groundedness: the share of answer sentences supported by the cited passages. A sentence is
  supported when its embedding is close to one of the passages' sentences (cosine >= 0.6 with
  all-MiniLM-L6-v2: paraphrases score ~0.7-0.9, unrelated sentences ~0.0-0.3) or when most of its
  content words appear in the passages (copying). An answer that cites nothing is checked against
  everything it was shown. No NLI model ships offline; this catches unsupported sentences, not
  subtle contradictions.
- citation validity: the share of cited [n] that name a passage the model was shown;
- answer relevance: cosine similarity of question and answer;
- refusal: whether the answer declines ("I don't know"...); right on unanswerable questions;
- against reference answers, when the set has them (several accepted answers allowed, the best
  counts): exact match and token F1 with SQuAD's normalisation (lower case, no punctuation, no
  articles; citations [n] removed from the answer first), and embedding similarity.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from pipelines.generation.citations import content_words
from pipelines.generation.prompts import citations

SUPPORT_COSINE = 0.6
SUPPORT_OVERLAP = 0.7
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CITE = re.compile(r"\[\d{1,3}\]")
_WORD = re.compile(r"[a-z0-9_]+")
REFUSAL = re.compile(
    r"(don'?t|do not|doesn'?t|does not) (know|contain|mention|say|provide|include)|"
    r"\bno (information|answer|mention)\b|\bnot (mentioned|provided|found|covered)\b|"
    r"\b(cannot|can't|unable to) (find|answer|determine|tell)\b|\bnot in the (sources|passages|context)\b",
    re.I,
)


class Encoder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class AnswerScores:
    groundedness: float
    citation_validity: float | None  # None when the answer cites nothing
    cites: bool
    answer_relevance: float
    refused: bool
    reference_similarity: float | None = None
    reference_f1: float | None = None
    exact_match: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sentences(text: str) -> list[str]:
    parts = (_CITE.sub("", s).strip() for s in _SENTENCE.split(text))
    return [p for p in parts if len(_WORD.findall(p.lower())) >= 3]


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation and articles removed, spaces folded; the
    answer's own citation marks go first, so citing does not cost a point."""
    text = _CITE.sub(" ", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(answer: str, reference: str) -> float:
    """SQuAD token F1 of ANSWER against one REFERENCE, on normalised tokens."""
    a, r = normalize_answer(answer).split(), normalize_answer(reference).split()
    if not a or not r:
        return float(a == r)
    common = sum(min(a.count(w), r.count(w)) for w in set(a))
    if common == 0:
        return 0.0
    p, rec = common / len(a), common / len(r)
    return 2 * p * rec / (p + rec)


def exact_match(answer: str, reference: str) -> float:
    return float(normalize_answer(answer) == normalize_answer(reference))


def _references(reference: str | Sequence[str] | None) -> list[str]:
    refs = [reference] if isinstance(reference, str) else list(reference or [])
    return [r for r in refs if r and r.strip()]


def score_answer(
    encoder: Encoder,
    question: str,
    answer: str,
    passages: Sequence[str],
    reference: str | Sequence[str] | None = None,
) -> AnswerScores:
    """PASSAGES are the numbered sources the model was shown, in order ([1] is passages[0]).
    REFERENCE: the accepted answers, if any; each reference score is the best over them."""
    cited = citations(answer)
    valid = [n for n in cited if 1 <= n <= len(passages)]
    support = [passages[n - 1] for n in valid] or list(passages)
    claims = sentences(answer)
    evidence = [s for p in support for s in sentences(p)] or list(support)
    grounded = 0.0
    if claims and evidence:
        vectors = encoder.embed(claims + evidence)
        sims = vectors[: len(claims)] @ vectors[len(claims) :].T
        words = content_words(" ".join(support))
        ok = [
            sims[i].max() >= SUPPORT_COSINE
            or len(content_words(c) & words) >= SUPPORT_OVERLAP * len(content_words(c))
            for i, c in enumerate(claims)
        ]
        grounded = float(np.mean(ok))
    qa = encoder.embed([question, answer or " "])
    scores = AnswerScores(
        groundedness=grounded,
        citation_validity=len(valid) / len(cited) if cited else None,
        cites=bool(cited),
        answer_relevance=float(qa[0] @ qa[1]),
        refused=bool(REFUSAL.search(answer)) or not answer.strip(),
    )
    refs = _references(reference)
    if refs:
        ra = encoder.embed([*refs, answer or " "])
        scores.reference_similarity = float((ra[:-1] @ ra[-1]).max())
        scores.reference_f1 = max(token_f1(answer, r) for r in refs)
        scores.exact_match = max(exact_match(answer, r) for r in refs)
    return scores
