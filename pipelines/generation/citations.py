"""Citations by construction: every sentence of an answer carries the [n] of a passage that supports
it. The model's own citations are checked (the number exists, the passage supports the sentence);
a missing or wrong one is repaired from sentence-to-passage support; a sentence that no passage
supports is dropped (and listed as such). An answer left with no supported sentence is replaced,
when the question is known, by the passage sentence closest to the question, quoted with its [n]
(status "quoted"): a reader gets what the sources say instead of what the model made up. A model
that declined to answer keeps its words; without the question such an answer is shown as it was
and marked not grounded.

A concise answer (`max_sentences`, the `answer_sentences` setting: 1 for the packaged small model)
keeps the first supported sentences and lists the rest as "trimmed"; with one sentence, the
passage sentence closest to the question is shown instead of the model's when it is closer to the
question (a small model's first sentence is often a restatement; the source's is the fact).

Support is what the offline groundedness metric measures (evaluation/answer_metrics.py): a
sentence is supported by a passage when its embedding is close to one of the passage's sentences
(cosine >= min_cosine) or when most of its content words appear in the passage (copying).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from pipelines.generation.refusal import REFUSAL_ANSWER

Status = Literal["checked", "repaired", "unsupported", "quoted", "redundant", "trimmed"]
DROPPED: tuple[Status, ...] = ("unsupported", "redundant", "trimmed")  # listed, not in the answer
_CODE = re.compile(r"```.*?(?:```|$)", re.S)  # a fenced code block is one piece, never split
_SENTENCE = re.compile(r".+?(?:[.!?](?:\s*\[\d{1,3}\])*[\"')\]]*(?=\s|$)|\n|$)", re.S)
_CITE = re.compile(r"\s*\[(\d{1,3})\]")
_WORD = re.compile(r"[a-z0-9_]+")
_TAIL = re.compile(r"[.!?:;,]*$")  # a closing quote or bracket stays before the marks: `"x" [1].`
_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d{1,3}[.)])\s+")
_DECLINED = re.compile(
    r"(don'?t|do not|doesn'?t|does not) (know|contain|mention|say|provide)|\bnot (mentioned|provided)\b|"
    r"\b(cannot|can't|unable to) (find|answer|determine|tell)\b",
    re.I,
)
_STOP = frozenset({
    "a", "an", "the", "and", "or", "of", "to", "in", "is", "are", "was", "be", "it", "its", "this",
    "that", "for", "on", "with", "as", "by", "at", "from", "can", "not", "you", "your", "i", "we",
    "he", "she", "they", "them", "their", "there", "which", "what", "when", "how", "does", "do", "if",
})  # fmt: skip
MIN_WORDS = 3  # shorter pieces ("Yes.") are connective, not claims: kept as they are


class Encoder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class Citation:
    sentence: str  # the sentence as shown, with its [n]
    sources: list[int]  # the [n] it cites (1-based, into the sources the model was shown)
    # checked: the model's own, verified; repaired: set here; unsupported: dropped; quoted: a passage
    # sentence shown in place of an answer that had no supported sentence; redundant: dropped, it
    # says nothing the question and the sentences before it did not (a small model's restating loop);
    # trimmed: supported, but past the answer's sentence limit (or a quote was closer to the question)
    status: Status


@dataclass
class CheckedAnswer:
    text: str
    grounded: bool
    citations: list[Citation] = field(default_factory=list)
    refused: bool = False  # nothing the model said was supported, and no source sentence is close

    @property
    def repaired(self) -> int:
        return sum(c.status == "repaired" for c in self.citations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "grounded": self.grounded,
            "citations": [asdict(c) for c in self.citations],
            "refused": self.refused,
        }


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Where each piece of TEXT starts and ends: a sentence with the citation marks that follow it,
    a line, or a fenced code block (one piece)."""
    spans: list[tuple[int, int]] = []
    at = 0
    for code in [*_CODE.finditer(text), None]:
        end = code.start() if code else len(text)
        spans += [m.span() for m in _SENTENCE.finditer(text, at, end) if m.group().strip()]
        if code:
            spans.append(code.span())
            at = code.end()
    return spans


def split_sentences(text: str) -> list[str]:
    """The answer's sentences, each with the citation marks that follow it; a fenced code block is
    one piece."""
    return [text[a:b].strip() for a, b in sentence_spans(text)]


def is_claim(piece: str) -> bool:
    """A piece the checker checks; shorter ones ("Yes.", "1.") are connective and kept as they are."""
    return _word_count(piece) >= MIN_WORDS


def is_code(piece: str) -> bool:
    return piece.startswith("```")


def join_pieces(pieces: Sequence[str]) -> str:
    """Sentences joined as prose; a code block stands on lines of its own."""
    text = ""
    for i, piece in enumerate(pieces):
        glue = "\n\n" if i and (is_code(piece) or is_code(pieces[i - 1])) else " " if i else ""
        text += glue + piece
    return text


def unwrap(text: str) -> str:
    """TEXT's hard line wraps joined, so a quote is a sentence, not a line. A break is a wrap when
    the next line's first word would not have fit on the line (greedy filling, the paragraph's
    longest line as its width); otherwise the line ended there on purpose, a heading or a term
    before its definition ("PEP 343 - The with statement" joined to "The specification ..." read
    as one sentence), and the break stays. A list item starts a line of its own."""
    out: list[str] = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.split("\n")
        width = max(len(line.rstrip()) for line in lines)
        joined = lines[0]
        for prev, line in itertools.pairwise(lines):
            word = line.split(maxsplit=1)[0] if line.strip() else ""
            wrapped = word and not _LIST_ITEM.match(line) and len(prev.rstrip()) + 1 + len(word) > width
            joined += (" " + line.strip()) if wrapped else ("\n" + line)
        out.append(joined)
    return "\n\n".join(out)


def _word_count(sentence: str) -> int:
    return len(_WORD.findall(_CITE.sub(" ", sentence).lower()))


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(_CITE.sub(" ", text).lower()) if w not in _STOP}


def _with_citations(sentence: str, sources: Sequence[int]) -> str:
    """SENTENCE with its citation marks replaced by SOURCES, placed before its final punctuation
    and after a quote or parenthesis that closes there (never inside it: `"pow(2, n)" [1].`)."""
    bare = _CITE.sub("", sentence).rstrip()
    tail = _TAIL.search(bare)
    cut = tail.start() if tail else len(bare)
    marks = "".join(f" [{n}]" for n in sources)
    return f"{bare[:cut].rstrip()}{marks}{bare[cut:]}"


def _quoted(best: tuple[int, str], dropped: list[Citation]) -> CheckedAnswer:
    """Passage BEST's sentence as the answer, with its [n]; DROPPED stay listed before it."""
    j, sentence = best
    text = _with_citations(" ".join(sentence.split()), [j])
    return CheckedAnswer(text, grounded=True, citations=[*dropped, Citation(text, [j], "quoted")])


class CitationChecker:
    """Checks and repairs the citations of an answer against the passages the model was shown."""

    def __init__(
        self,
        encoder: Encoder,
        min_cosine: float = 0.6,
        min_overlap: float = 0.7,
        max_sentences: int | None = None,
    ) -> None:
        if not (0 < min_cosine <= 1 and 0 < min_overlap <= 1):
            raise ValueError("min_cosine and min_overlap must be in (0, 1]")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError("max_sentences must be >= 1 (None: no limit)")
        self.encoder = encoder
        self.min_cosine = min_cosine
        self.min_overlap = min_overlap
        self.max_sentences = max_sentences

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_cosine": self.min_cosine,
            "min_overlap": self.min_overlap,
            "max_sentences": self.max_sentences,
        }

    def support(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """support[i, j]: how well passage j supports claim i, in [0, 1] (>= 1 means supported)."""
        pieces = [[s for s in split_sentences(p) if len(content_words(s))] or [p] for p in passages]
        flat = [s for ps in pieces for s in ps]
        vectors = self.encoder.embed([_CITE.sub("", c) for c in claims] + flat)
        sims = vectors[: len(claims)] @ vectors[len(claims) :].T
        out = np.zeros((len(claims), len(passages)))
        start = 0
        for j, ps in enumerate(pieces):
            cosine = sims[:, start : start + len(ps)].max(axis=1)
            words = content_words(passages[j])
            overlap = np.array(
                [len(content_words(c) & words) / max(1, len(content_words(c))) for c in claims]
            )
            out[:, j] = np.maximum(cosine / self.min_cosine, overlap / self.min_overlap)
            start += len(ps)
        return out

    def check(
        self,
        answer: str,
        passages: Sequence[str],
        question: str | None = None,
        min_similarity: float | None = None,
    ) -> CheckedAnswer:
        """QUESTION, when given, lets an answer with no supported sentence fall back to a quote;
        MIN_SIMILARITY (the collection's refusal threshold) is how close to the question that quote
        must be, else the answer is the refusal: the model's words had no support and the sources
        hold nothing close to the question."""
        if not passages:
            return CheckedAnswer(answer.strip(), grounded=False)
        sentences = split_sentences(answer)
        claims = [i for i, s in enumerate(sentences) if is_claim(s)]
        citations: list[Citation] = []
        if claims:
            support = self.support([sentences[i] for i in claims], passages)
            for row, i in enumerate(claims):
                sentences[i] = self._checked(sentences[i], support[row], citations)
        kept = {i for i, c in zip(claims, citations, strict=True) if c.status != "unsupported"}
        if not kept:  # nothing supported: quote the sources if we can, else show the answer and say so
            if question and not _DECLINED.search(answer):
                return self.quote(question, passages, citations, min_similarity)
            return CheckedAnswer(answer.strip(), grounded=False, citations=citations)
        by_sentence = dict(zip(claims, citations, strict=True))
        if question:
            kept -= self._redundant(question, sentences, sorted(kept), by_sentence)
        if self.max_sentences is not None:
            return self._concise(question, sentences, sorted(kept), by_sentence, passages)
        shown = [s for i, s in enumerate(sentences) if i in kept or i not in claims]
        # What is shown is supported sentence by sentence; the dropped ones stay listed as unsupported.
        return CheckedAnswer(join_pieces(shown), grounded=True, citations=citations)

    def _concise(
        self,
        question: str | None,
        sentences: list[str],
        kept: list[int],
        citations: dict[int, Citation],
        passages: Sequence[str],
    ) -> CheckedAnswer:
        """The first MAX_SENTENCES kept sentences (and the short pieces between them); the others
        are marked trimmed. One sentence: the source's sentence closest to the question when it is
        closer than the model's."""
        assert self.max_sentences is not None
        for i in kept[self.max_sentences :]:
            citations[i].status = "trimmed"
        kept = kept[: self.max_sentences]
        listed = list(citations.values())
        if question and self.max_sentences == 1:
            best, similarity, own = self._closest(question, passages, rival=sentences[kept[0]])
            if best is not None and similarity > own:
                citations[kept[0]].status = "trimmed"
                return _quoted(best, listed)
        shown = [s for i, s in enumerate(sentences[: kept[-1] + 1]) if i in kept or i not in citations]
        return CheckedAnswer(join_pieces(shown), grounded=True, citations=listed)

    @staticmethod
    def _redundant(
        question: str, sentences: list[str], kept: list[int], citations: dict[int, Citation]
    ) -> set[int]:
        """Kept sentences that add no content word to the question and the sentences before them;
        the first is never dropped. Their citations are marked redundant."""
        said = content_words(question)
        out: set[int] = set()
        for n, i in enumerate(kept):
            words = content_words(sentences[i])
            if n and not words - said:
                out.add(i)
                citations[i].status = "redundant"
            said |= words
        return out

    def quote(
        self,
        question: str,
        passages: Sequence[str],
        dropped: list[Citation],
        min_similarity: float | None = None,
    ) -> CheckedAnswer:
        """The passage sentence closest to the question, with its [n]: what the sources say; the
        refusal when that sentence is less similar to the question than MIN_SIMILARITY."""
        best, similarity, _ = self._closest(question, passages)
        if best is None:
            return CheckedAnswer("", grounded=False, citations=dropped)
        if min_similarity is not None and similarity < min_similarity:
            return CheckedAnswer(REFUSAL_ANSWER, grounded=False, citations=dropped, refused=True)
        return _quoted(best, dropped)

    def _closest(
        self, question: str, passages: Sequence[str], rival: str | None = None
    ) -> tuple[tuple[int, str] | None, float, float]:
        """The passages' sentence closest to QUESTION (its [n] and text; None when they have none),
        its similarity to the question, and RIVAL's, from one encoder call."""
        unwrapped = [unwrap(p) for p in passages]
        pieces = [
            (j, s) for j, p in enumerate(unwrapped, 1) for s in split_sentences(p) if _word_count(s) >= 4
        ]
        prose = [(j, s) for j, s in pieces if _CITE.sub("", s).rstrip("\"') ").endswith((".", "!", "?"))]
        pieces = prose or pieces  # a heading is no answer, unless there is nothing else
        if not pieces:
            return None, 0.0, 0.0
        rivals = [] if rival is None else [_CITE.sub("", rival)]
        vectors = self.encoder.embed([question, *rivals] + [_CITE.sub("", s) for _, s in pieces])
        similarity = vectors[1 + len(rivals) :] @ vectors[0]
        best = int(np.argmax(similarity))
        own = float(vectors[1] @ vectors[0]) if rivals else 0.0
        return pieces[best], float(similarity[best]), own

    def _checked(self, sentence: str, support: np.ndarray, citations: list[Citation]) -> str:
        cited = [int(n) for n in _CITE.findall(sentence)]
        valid = [n for n in dict.fromkeys(cited) if 1 <= n <= len(support) and support[n - 1] >= 1]
        if cited and len(valid) == len(set(cited)):
            citations.append(Citation(sentence, valid, "checked"))
            return sentence
        best = int(np.argmax(support)) + 1
        if support[best - 1] < 1:
            citations.append(Citation(sentence, [], "unsupported"))
            return sentence
        sources = valid or [best]
        # A code block keeps its text (a mark after its closing fence would break the fence).
        fixed = sentence if is_code(sentence) else _with_citations(sentence, sources)
        citations.append(Citation(fixed, sources, "repaired"))
        return fixed
