"""Offline answer metrics, with the real MiniLM encoder."""

from __future__ import annotations

from pipelines.evaluation.answer_metrics import (
    exact_match,
    normalize_answer,
    score_answer,
    sentences,
    token_f1,
)

PASSAGES = [
    "The with statement wraps the execution of a block with methods defined by a context manager. "
    "The context manager's exit method runs even when the block raises an exception.",
    "Sourdough starter is a mix of flour and water that ferments with wild yeast.",
]


def test_a_copied_answer_is_grounded_and_its_citations_valid(embedder) -> None:  # type: ignore[no-untyped-def]
    answer = "The context manager's exit method runs even when the block raises an exception [1]."
    s = score_answer(embedder, "Does the exit method run after an exception?", answer, PASSAGES)
    assert s.groundedness == 1.0 and s.citation_validity == 1.0 and s.cites
    assert not s.refused and s.answer_relevance > 0.3


def test_an_invented_sentence_lowers_groundedness_and_a_bad_citation_is_caught(embedder) -> None:  # type: ignore[no-untyped-def]
    answer = (
        "The with statement wraps a block with a context manager [1]. "
        "Penguins migrate to the Sahara desert every winter to lay eggs [7]."
    )
    s = score_answer(embedder, "What does the with statement do?", answer, PASSAGES)
    assert s.groundedness == 0.5
    assert s.citation_validity == 0.5  # [7] names no passage the model was shown


def test_refusals_and_reference_answers(embedder) -> None:  # type: ignore[no-untyped-def]
    s = score_answer(
        embedder, "What is the capital of Australia?", "I don't know; the sources do not say.", PASSAGES
    )
    assert s.refused and s.citation_validity is None
    ref = score_answer(embedder, "q", "Use a with statement.", PASSAGES, reference="Use a with statement.")
    assert ref.reference_f1 == 1.0 and ref.reference_similarity > 0.99
    assert token_f1("a b c", "x y z") == 0.0
    assert sentences("First sentence here [1]. Short. Another full sentence here!") == [
        "First sentence here .",
        "Another full sentence here!",
    ]


def test_squad_normalisation_exact_match_and_f1_over_several_accepted_answers(embedder) -> None:  # type: ignore[no-untyped-def]
    assert normalize_answer("The  Fresnel lens, [2]!") == "fresnel lens"
    assert exact_match("A Fresnel lens [1].", "fresnel lens") == 1.0
    assert token_f1("the lens of Fresnel", "Fresnel lens") == 0.8  # p 2/3, r 1
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0
    s = score_answer(
        embedder, "Who invented the lens?", "Augustin-Jean Fresnel [1].", PASSAGES,
        reference=["Fresnel", "Augustin-Jean Fresnel"],
    )  # fmt: skip
    assert s.exact_match == 1.0 and s.reference_f1 == 1.0  # the best accepted answer counts
    none = score_answer(embedder, "q", "Something else.", PASSAGES, reference=[])
    assert none.exact_match is None and none.reference_f1 is None
