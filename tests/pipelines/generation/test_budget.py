"""The sentence budget: the engine stops once the answer holds what the checker will keep."""

from __future__ import annotations

from pipelines.generation import OnnxGenerator
from pipelines.generation.budget import SLACK, SentenceBudget, claims_end, with_sentence_budget
from pipelines.generation.citations import is_claim, split_sentences
from pipelines.generation.cleanup import clean_answer

PARIS = [{"role": "user", "content": "Describe Paris in a paragraph."}]


def test_a_sentence_counts_once_the_next_piece_has_begun() -> None:
    text = "Paris is the capital [1]. It is big"
    end = claims_end(text, 1)
    assert end is not None and text[:end] == "Paris is the capital [1]."
    assert claims_end(text, 2) is None  # the last piece may still be growing
    assert claims_end("Paris is the capital.", 1) is None


def test_sentences_are_counted_as_shown_not_by_wrapped_line() -> None:
    """A small model wraps its lines as its sources are wrapped; the budget counts sentences."""
    from pipelines.generation.cleanup import tidy_whitespace

    wrapped = "The with statement is used to create\na context manager for a block.\nIt is"
    assert claims_end(wrapped, 2) is not None  # three lines...
    assert claims_end(tidy_whitespace(wrapped), 2) is None  # ...one sentence so far


def test_connectives_and_list_numbers_are_not_sentences_a_code_block_is_one() -> None:
    text = "Yes. 1. Paris is in France. Rome"
    end = claims_end(text, 1)
    assert end is not None and text[:end].endswith("France.")
    code = "Use this:\n```python\nprint('a. b. c. d')\n```\nDone"
    end = claims_end(code, 1)
    assert end is not None and code[:end].endswith("```")  # the code block, not a "sentence" in it


def test_the_engine_stops_after_the_budget_and_is_freed(engine: OnnxGenerator) -> None:
    whole = engine.generate(PARIS, max_tokens=160)
    assert sum(is_claim(s) for s in split_sentences(whole.text)) > 3
    budget = SentenceBudget(engine, 2)
    short = budget.generate(PARIS, max_tokens=160)
    assert [s for s in split_sentences(short.text) if is_claim(s)] == [
        s for s in split_sentences(whole.text) if is_claim(s)
    ][:2]  # greedy: the same first sentences, and no more
    assert short.completion_tokens < whole.completion_tokens and short.prompt_tokens == whole.prompt_tokens
    state: dict[str, object] = {}
    assert clean_answer("".join(budget.stream(PARIS, max_tokens=160, state=state))) == short.text
    assert state["finish"] == "stop" and state["completion_tokens"] == short.completion_tokens
    assert engine._step.acquire(timeout=1)  # the stream was closed: nobody holds the model
    engine._step.release()
    assert budget.to_dict()["stop_after_sentences"] == 2 and budget.to_dict()["engine"] == "onnxruntime-genai"


def test_answers_without_a_sentence_limit_are_not_budgeted(engine: OnnxGenerator) -> None:
    assert with_sentence_budget(engine, None) is engine
    assert with_sentence_budget(None, 1) is None
    limited = with_sentence_budget(engine, 1)
    assert isinstance(limited, SentenceBudget) and limited.sentences == 1 + SLACK
