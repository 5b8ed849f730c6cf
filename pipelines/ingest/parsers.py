"""Turn bytes into (title, text): one function per format, no I/O here."""

from __future__ import annotations

import itertools
import re
from html.parser import HTMLParser

MIME_BY_SUFFIX = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".rst": "text/x-rst",
    ".html": "text/html",
    ".htm": "text/html",
    ".jsonl": "application/jsonl",
    ".pdf": "application/pdf",
}
TEXT_MIME_TYPES = frozenset(MIME_BY_SUFFIX.values()) - {"application/jsonl"} | {"application/json"}
BINARY_MIME_TYPES = frozenset({"application/pdf"})  # parsed from bytes, not decoded as text


class ParseError(ValueError):
    """The input cannot become a document; the message is the quarantine reason."""


def decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise ParseError("binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 4]!r})") from exc


_MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def parse_markdown(text: str, fallback_title: str) -> tuple[str, str]:
    m = _MD_HEADING.search(text)
    return (m.group(1).strip() if m else fallback_title), text.strip()


def parse_plain(text: str, fallback_title: str) -> tuple[str, str]:
    """A first short line followed by a blank line is the title (and stays in the text)."""
    body = text.strip()
    head, sep, _ = body.partition("\n\n")
    if sep and "\n" not in head and 0 < len(head) <= 120:
        return head.strip(), body
    return fallback_title, body


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "tr",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "section",
            "article",
            "pre",
            "blockquote",
            "table",
            "ul",
            "ol",
            "hr",
            "title",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[tuple[str, bool]] = []  # (text, verbatim: inside <pre>)
        self.title_parts: list[str] = []
        self._skip = 0
        self._pre = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip += 1
        if tag in self._BLOCK:
            self.parts.append(("\n\n", False))
        self._pre += tag == "pre"
        if not self._skip and len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.parts.append(("#" * int(tag[1]) + " ", False))  # headings as Markdown, for heading paths

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP and self._skip:
            self._skip -= 1
        if tag == "pre" and self._pre:
            self._pre -= 1
        if tag in self._BLOCK:
            self.parts.append(("\n\n", False))

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        elif not self._skip:
            self.parts.append((data, self._pre > 0))


def parse_html(text: str, fallback_title: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    pieces = []
    for verbatim, run in itertools.groupby(parser.parts, key=lambda part: part[1]):
        piece = "".join(text for text, _ in run)
        if not verbatim:  # the page source's line breaks and indentation are layout; <pre>'s are text
            piece = re.sub(r" *\n *", "\n", re.sub(r"[ \t\r\f\v]+", " ", piece))
        pieces.append(piece)
    body = re.sub(r"\n\s*\n(\s*\n)*", "\n\n", "".join(pieces)).strip()
    title = " ".join("".join(parser.title_parts).split()) or fallback_title
    return title, body


def parse_pdf(data: bytes, fallback_title: str) -> tuple[str, str, int]:
    """(title, text, pages): the text layer, pages separated by a form feed (the chunker reads
    page numbers from them). A PDF without a text layer (a scan) is an error, not an empty document."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [(p.extract_text() or "").strip() for p in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or fallback_title
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"corrupt or unreadable PDF: {exc}") from exc
    if not any(pages):
        raise ParseError(f"PDF has no text layer ({len(pages)} pages; scanned images need OCR)")
    return str(title), "\f".join(pages), len(pages)


PARSERS = {
    "text/markdown": parse_markdown,
    "text/plain": parse_plain,
    "text/x-rst": parse_plain,
    "text/html": parse_html,
}
