"""Clean output: what every backend's answer goes through before a person reads it. Small models
loop ("The starter needs flour. The starter needs flour. ...") and stop mid-sentence at max_tokens;
both read as broken. Rules, not a model: predictable, instant, testable."""

from __future__ import annotations

import re
from typing import Any

from pipelines.generation.base import STOP, Generation, cut_at_stop

_CITES = r"(?:\s*\[\d{1,3}\])*"
_SENTENCE_END = re.compile(r"[.!?]" + _CITES + r"[\"')\]]*(?=\s|$)")
_FINISHED = re.compile(r"(?:[.!?:]" + _CITES + r"[\"')\]]*|\[\d{1,3}\])$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d{1,3}[.)])\s+")
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_RUN = 3  # a phrase said this many times in a row is a loop


def _key(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def collapse_stutter(text: str) -> str:
    """A phrase (1-8 words) said MAX_RUN or more times in a row is said once."""
    while True:
        words = list(re.finditer(r"\S+", text))
        tokens = [_key(m.group()) for m in words]
        for i in range(len(tokens)):
            for n in range(1, 9):
                phrase = tokens[i : i + n]
                runs = 1
                while tokens[i + runs * n : i + (runs + 1) * n] == phrase:
                    runs += 1
                if runs >= MAX_RUN and any(phrase):
                    last = words[i + runs * n - 1]
                    text = text[: words[i + n - 1].end()] + text[last.end() :]
                    break
            else:
                continue
            break
        else:
            return text


def _sentence_loop(text: str) -> int | None:
    """Where the first sentence that repeats an earlier one starts (the answer started over)."""
    seen: set[str] = set()
    start = 0
    for end in [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]:
        key = _key(text[start:end])
        if key and key in seen:
            return start
        seen.add(key)
        start = end
    return None


def cut_repetition(text: str) -> str:
    """Cut a loop: a stutter said once, and everything from a sentence that repeats an earlier one."""
    text = collapse_stutter(text)
    at = _sentence_loop(text)
    return text if at is None else text[:at].rstrip()


def end_at_sentence(text: str) -> str:
    """Drop what the model left unfinished when it ran out of tokens: an unclosed code block, and
    an unfinished last sentence (or last paragraph, when a finished one comes before it). A list
    item, or an answer that is one fragment, is kept whole."""
    if text.count("```") % 2:  # a code block cut off: its head would render as the rest of the page
        text = text[: text.rfind("```")].rstrip()
    head, sep, last = text.rpartition("\n")
    last = last.rstrip()
    if not last or _LIST_ITEM.match(last) or _FINISHED.search(last) or last.startswith("```"):
        return text
    ends = list(_SENTENCE_END.finditer(last))
    if ends:
        return head + sep + last[: ends[-1].end()]
    if _SENTENCE_END.search(head) or "```" in head:  # a finished paragraph comes before it
        return head.rstrip()
    return text


_BLOCK_START = re.compile(r"^(?:[-*•+>#|]|\d{1,3}[.)]\s|```)")


def tidy_whitespace(text: str) -> str:
    """Prose spacing: no runs of spaces, no trailing spaces, at most one blank line in a row, and
    hard-wrapped lines joined (a model that read wrapped sources wraps its own answer mid-sentence;
    Markdown shows a single line break as a space anyway). Lines inside a code block keep their
    breaks and indentation (Python's is its syntax); list items, headings and quotes start lines."""
    lines: list[str] = []
    in_code = False
    for line in text.strip().splitlines():
        fence = line.lstrip().startswith("```")
        if in_code and not fence:
            lines.append(line.rstrip())
        else:
            line = re.sub(r"[ \t]+", " ", line).strip()
            prev = lines[-1] if lines else ""
            if line and prev and not prev.startswith(("```", "#", "|")) and not _BLOCK_START.match(line):
                lines[-1] = f"{prev} {line}"
            else:
                lines.append(line)
        in_code ^= fence
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def clean_answer(text: str, stop: tuple[str, ...] = STOP) -> str:
    """The answer as shown: cut at a stop sequence, loops cut, ended at a complete sentence."""
    return end_at_sentence(tidy_whitespace(cut_repetition(cut_at_stop(text, stop))))


class AnswerFromStream:
    """For backends whose `stream(..., state=)` reports token counts and the finish reason:
    `generate` is the whole stream, cleaned like every answer."""

    name: str

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Generation:
        state: dict[str, Any] = {}
        pieces = self.stream(messages, max_tokens=max_tokens, temperature=temperature, state=state)  # type: ignore[attr-defined]
        text = "".join(pieces)
        return Generation(
            clean_answer(text), state["prompt_tokens"], state["completion_tokens"], self.name, state["finish"]
        )


class ChatTemplatePrompts:
    """For local engines that build prompts with the model's own tokenizer (`self.tokenizer`):
    token counts and prompt ids are the same on every engine of the same model."""

    tokenizer: Any

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer.encode(text, add_special_tokens=False))
