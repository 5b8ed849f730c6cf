"""Citations by construction, with the real MiniLM encoder: checked, repaired, unsupported."""

from __future__ import annotations

import textwrap

import pytest

from pipelines.generation.citations import CitationChecker, split_sentences, unwrap
from pipelines.generation.refusal import REFUSAL_ANSWER

PASSAGES = [
    "The with statement wraps the execution of a block with methods defined by a context manager. "
    "The context manager's exit method runs even when the block raises an exception.",
    "Sourdough starter is a mix of flour and water that ferments with wild yeast.",
]


@pytest.fixture(scope="module")
def checker(embedder) -> CitationChecker:  # type: ignore[no-untyped-def]
    return CitationChecker(embedder)


def test_a_right_citation_is_checked_and_kept(checker: CitationChecker) -> None:
    answer = "The exit method runs even when the block raises an exception [1]."
    out = checker.check(answer, PASSAGES)
    assert out.text == answer and out.grounded
    assert [(c.sources, c.status) for c in out.citations] == [([1], "checked")]


def test_a_wrong_or_missing_citation_is_repaired_from_support(checker: CitationChecker) -> None:
    answer = (
        "The with statement wraps a block with a context manager [2]. "  # wrong: [2] is about sourdough
        "A starter is flour and water fermented by wild yeast. "  # missing
        "Sourdough ferments with wild yeast [7]."  # names no source
    )
    out = checker.check(answer, PASSAGES)
    assert [(c.sources, c.status) for c in out.citations] == [
        ([1], "repaired"),
        ([2], "repaired"),
        ([2], "repaired"),
    ]
    assert out.text == (
        "The with statement wraps a block with a context manager [1]. "
        "A starter is flour and water fermented by wild yeast [2]. "
        "Sourdough ferments with wild yeast [2]."
    )
    assert out.grounded and out.repaired == 3


def test_a_repaired_mark_goes_after_a_closing_quote_or_parenthesis(checker: CitationChecker) -> None:
    # Before, the mark went inside them: `... raises an "exception [1]".`
    answer = (
        'The exit method runs even when the block raises an "exception". '
        "A starter is flour and water (fermented by wild yeast)."
    )
    out = checker.check(answer, PASSAGES)
    assert out.text == (
        'The exit method runs even when the block raises an "exception" [1]. '
        "A starter is flour and water (fermented by wild yeast) [2]."
    )


def test_an_unsupported_sentence_is_dropped_and_listed(checker: CitationChecker) -> None:
    answer = "The exit method runs even when the block raises [1]. Penguins winter in the Sahara [2]."
    out = checker.check(answer, PASSAGES)
    assert out.text == "The exit method runs even when the block raises [1]."
    assert out.grounded
    assert out.citations[1].status == "unsupported" and "Penguins" in out.citations[1].sentence


def test_an_answer_no_source_supports_is_shown_but_not_grounded(checker: CitationChecker) -> None:
    answer = "Penguins fly to Mars on Tuesdays [1]."
    out = checker.check(answer, PASSAGES)
    assert out.text == answer and not out.grounded
    assert [c.status for c in out.citations] == ["unsupported"]
    assert not checker.check("", PASSAGES).grounded and not checker.check(answer, []).grounded


def test_with_the_question_an_unsupported_answer_becomes_a_quote(checker: CitationChecker) -> None:
    wrapped = [
        PASSAGES[0],
        "Sourdough\n\nSourdough starter is a mix of flour and water\nthat ferments with wild yeast.",
    ]
    out = checker.check("Penguins fly to Mars on Tuesdays [1].", wrapped, "What is a sourdough starter?")
    # The closest sentence of the sources (its hard line wrap joined, not the heading), with its [n].
    assert out.text == "Sourdough starter is a mix of flour and water that ferments with wild yeast [2]."
    assert out.grounded
    assert [c.status for c in out.citations] == ["unsupported", "quoted"]
    assert checker.check("", wrapped, "What is a sourdough starter?").citations[-1].sources == [2]
    # A model that declined keeps its words: the refusal metrics must still see it.
    declined = "The sources do not mention penguins on Mars."
    assert checker.check(declined, wrapped, "Do penguins fly to Mars?").text == declined


def test_short_connectives_stay_and_sentences_keep_their_marks() -> None:
    assert split_sentences("Yes. It wraps a block [1]! And more") == [
        "Yes.",
        "It wraps a block [1]!",
        "And more",
    ]
    with pytest.raises(ValueError):
        CitationChecker(object(), min_cosine=0)  # type: ignore[arg-type]


def test_a_sentence_that_says_nothing_new_is_dropped_as_redundant(checker: CitationChecker) -> None:
    answer = (
        "The exit method runs even when the block raises an exception [1]. "
        "The exit method runs even when the block raises [1]."  # a restating loop
    )
    out = checker.check(answer, PASSAGES, "When does the exit method run?")
    assert out.text == "The exit method runs even when the block raises an exception [1]."
    assert [c.status for c in out.citations] == ["checked", "redundant"]


def test_a_code_block_is_one_piece_kept_whole_or_dropped_whole(checker: CitationChecker) -> None:
    code = "```python\nwith open(path) as f:\n    data = f.read()\n```"
    assert split_sentences(f"Use it like this. {code} Done [1].") == ["Use it like this.", code, "Done [1]."]
    invented = "```python\ndef rebind(func, *args):\n    return wrapper(func)\n```"
    answer = f"The exit method runs even when the block raises an exception [1].\n\n{invented}"
    out = checker.check(answer, PASSAGES, "When does the exit method run?")
    # The invented code has no support: dropped whole, never cut into fragments of its lines.
    assert out.text == "The exit method runs even when the block raises an exception [1]."
    assert [c.status for c in out.citations] == ["checked", "unsupported"]
    copied = "```\nwith manager:\n    block()\n```"
    source = ["The with statement runs a block with a context manager:\n\n" + copied]
    kept = checker.check(f"The with statement runs a block [1].\n\n{copied}", source).text
    assert kept == f"The with statement runs a block [1].\n\n{copied}"  # the fence left intact


def test_no_support_and_no_close_source_sentence_is_the_refusal(checker: CitationChecker) -> None:
    question = "What is the capital of Australia?"
    out = checker.check("The capital of Australia is Sydney [1].", PASSAGES, question, min_similarity=0.5)
    assert out.refused and not out.grounded and out.text == REFUSAL_ANSWER
    assert [c.status for c in out.citations] == ["unsupported"]
    assert out.to_dict()["refused"]
    # A close enough source sentence is still quoted (the threshold is the collection's own).
    near = checker.check("Penguins fly [1].", PASSAGES, "What is a sourdough starter?", min_similarity=0.5)
    assert not near.refused and near.citations[-1].status == "quoted"


def test_a_concise_answer_keeps_its_first_supported_sentences(embedder) -> None:  # type: ignore[no-untyped-def]
    answer = (
        "The with statement wraps a block with a context manager [1]. "
        "Penguins winter in the Sahara [2]. "  # unsupported: dropped, does not count
        "The exit method runs even when the block raises an exception [1]. "
        "A starter is flour and water fermented by wild yeast [2]."
    )
    two = CitationChecker(embedder, max_sentences=2).check(answer, PASSAGES)
    assert two.text == (
        "The with statement wraps a block with a context manager [1]. "
        "The exit method runs even when the block raises an exception [1]."
    )
    assert [c.status for c in two.citations] == ["checked", "unsupported", "checked", "trimmed"]
    assert two.grounded
    with pytest.raises(ValueError):
        CitationChecker(embedder, max_sentences=0)


def test_one_sentence_is_the_closer_of_the_models_and_the_sources(embedder) -> None:  # type: ignore[no-untyped-def]
    one = CitationChecker(embedder, max_sentences=1)
    question = "When does the exit method of a context manager run?"
    # The model's first sentence is true but beside the question: the source's own sentence is closer.
    vague = "The with statement wraps a block with a context manager [1]. It is common in Python code."
    out = one.check(vague, PASSAGES, question)
    assert out.text == "The context manager's exit method runs even when the block raises an exception [1]."
    assert [c.status for c in out.citations] == ["trimmed", "unsupported", "quoted"] and out.grounded
    # A model sentence closer to the question than any source sentence is the one shown.
    direct = (
        "The exit method of a context manager runs when the block ends or raises [1]. "
        "The with statement wraps a block with a context manager [1]."
    )
    kept = one.check(direct, PASSAGES, question)
    assert kept.text == "The exit method of a context manager runs when the block ends or raises [1]."
    assert [c.status for c in kept.citations] == ["checked", "trimmed"]


def test_the_packaged_small_model_answers_in_one_sentence_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipelines.settings import Settings

    assert Settings(data_dir=tmp_path).answer_sentence_limit == 1
    assert Settings(data_dir=tmp_path, generator="openai").answer_sentence_limit is None
    assert Settings(data_dir=tmp_path, generator_model=str(tmp_path)).answer_sentence_limit is None
    assert Settings(data_dir=tmp_path, generator="vllm", answer_sentences=3).answer_sentence_limit == 3


def test_a_term_and_its_definition_are_not_quoted_as_one_sentence(checker: CitationChecker) -> None:
    see_also = (  # as chunks keep pydoc's "See also" lists: a term, then its hard-wrapped definition
        "See also:\n\n**PEP 343** - The with statement\n"
        "The specification, background, and examples for the Python with\nstatement."
    )
    out = checker.check("Penguins fly to Mars [1].", [see_also], "Where is the with statement specified?")
    assert out.text == "The specification, background, and examples for the Python with statement [1]."


def test_unwrap_joins_the_wraps_of_greedy_filling_and_nothing_else() -> None:
    words = "a context manager wraps the execution of a block with methods and a starter ferments"
    words = words.split(" ")
    paragraph = " ".join(words[i * 7 % len(words)] for i in range(90)) + "."
    assert unwrap(textwrap.fill(paragraph, 60) + "\n\n" + textwrap.fill(paragraph, 72)) == (
        paragraph + "\n\n" + paragraph
    )
    assert unwrap("Title line\nThe first sentence of a text that was not wrapped at all.") == (
        "Title line\nThe first sentence of a text that was not wrapped at all."
    )
    item = "- an item that was wrapped here.\n- the next"
    assert unwrap("- an item that was\n  wrapped here.\n- the next") == item
