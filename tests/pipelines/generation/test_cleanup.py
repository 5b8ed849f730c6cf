"""Clean output: loops cut, answers ended at a complete sentence, prose spacing, stop sequences."""

import pytest

from pipelines.generation import STOP, clean_answer
from pipelines.generation.cleanup import collapse_stutter, cut_repetition, end_at_sentence, tidy_whitespace


def test_an_answer_that_starts_over_is_cut_where_the_loop_begins() -> None:
    loop = "Feed the starter daily [1]. Keep it warm [2]. Feed the starter daily [1]. Keep it warm [2]."
    assert cut_repetition(loop) == "Feed the starter daily [1]. Keep it warm [2]."
    five = " ".join(["The with statement wraps a block [1]."] * 5)
    assert clean_answer(five) == "The with statement wraps a block [1]."


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("The the the the answer is here.", "The answer is here."),
        ("Lava flows, flows, flows, flows downhill.", "Lava flows, downhill."),
        ("A B C A B C A B C D.", "A B C D."),
        ("It is very, very good.", "It is very, very good."),  # said twice is emphasis, not a loop
    ],
)
def test_a_stutter_is_said_once(text: str, clean: str) -> None:
    assert collapse_stutter(text) == clean


@pytest.mark.parametrize(
    ("text", "ended"),
    [
        ("It manages context [1]. It ensures cleanup [2]. The with statement also hand",
         "It manages context [1]. It ensures cleanup [2]."),
        ('He said "stop." Then he wa', 'He said "stop."'),
        ("Finished sentence [1].", "Finished sentence [1]."),
        ("Cited claim without a full stop [2]", "Cited claim without a full stop [2]"),
        ("I do not know", "I do not know"),  # one fragment: kept rather than emptied
        ("Steps:\n1. Mix flour\n2. Add water", "Steps:\n1. Mix flour\n2. Add water"),  # a list item
        ("First paragraph.\n\nSecond one is cut off and", "First paragraph."),
        ("A heading\nand a fragment", "A heading\nand a fragment"),  # nothing finished: kept
        ("Use with [1].\n\n```python\nwith open(p) as f:\n    f.re", "Use with [1]."),  # open code
        ("Like this:\n```\nwith x:\n    pass\n```", "Like this:\n```\nwith x:\n    pass\n```"),
    ],
)  # fmt: skip
def test_an_unfinished_last_sentence_is_dropped(text: str, ended: str) -> None:
    assert end_at_sentence(text) == ended


def test_prose_spacing_and_stop_sequences() -> None:
    raw = "Green tea is steamed.   Black tea is oxidised.  \n\n\n\nBoth are C. sinensis [1].\nQuestion: x"
    assert clean_answer(raw) == ("Green tea is steamed. Black tea is oxidised.\n\nBoth are C. sinensis [1].")
    assert tidy_whitespace("  a \t b  \n c ") == "a b c"
    wrapped = (
        "The with statement is used to create a\ncontext manager [1].\n\n# Steps\n1. Open\nthe file\n- Read"
    )
    assert tidy_whitespace(wrapped) == (
        "The with statement is used to create a context manager [1].\n\n# Steps\n1. Open the file\n- Read"
    )
    code = "Like this:\n```python\nwith open(p) as f:\n    data = f.read()  \n```\n  done"
    assert (
        tidy_whitespace(code) == "Like this:\n```python\nwith open(p) as f:\n    data = f.read()\n```\ndone"
    )
    for stop in STOP:  # the chat template's markers never reach a reader
        assert clean_answer(f"An answer [1].{stop}more") == "An answer [1]."
