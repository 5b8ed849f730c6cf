"""Read sources (folders, files, JSONL, BEIR corpora) into parsed documents and rejected inputs.

Every input (a file, or a line of a JSONL file) ends as exactly one of the two, so counts add up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipelines.ids import document_id
from pipelines.parsers import MIME_BY_SUFFIX, PARSERS, ParseError, decode_text

SourceFormat = Literal["auto", "files", "jsonl", "beir"]
RAW_KEEP = 2000  # characters of a rejected input kept in quarantine


@dataclass
class ParsedDocument:
    id: str
    title: str
    text: str
    source_uri: str
    mime_type: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RejectedInput:
    source_uri: str
    reason: str
    raw: str
    input_id: str | None = None


@dataclass
class SourceBatch:
    documents: list[ParsedDocument] = field(default_factory=list)
    rejected: list[RejectedInput] = field(default_factory=list)

    @property
    def inputs(self) -> int:
        return len(self.documents) + len(self.rejected)


def read_sources(
    sources: Iterable[str | Path], fmt: SourceFormat = "auto", max_bytes: int = 5_000_000
) -> SourceBatch:
    batch = SourceBatch()
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"source {source} does not exist")
        for item in _read_one(path.resolve(), fmt, max_bytes):
            (batch.documents if isinstance(item, ParsedDocument) else batch.rejected).append(item)
    return batch


def _read_one(path: Path, fmt: SourceFormat, max_bytes: int) -> Iterator[ParsedDocument | RejectedInput]:
    if path.is_dir():
        if fmt == "beir" or (
            fmt == "auto" and (path / "corpus.jsonl").is_file() and (path / "qrels").is_dir()
        ):
            yield from _read_jsonl(path / "corpus.jsonl", id_field="_id", max_bytes=max_bytes)
            return
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path)):
            yield from _read_one(file, fmt, max_bytes)
        return
    if fmt in ("jsonl", "beir") or (fmt == "auto" and path.suffix == ".jsonl"):
        yield from _read_jsonl(path, id_field="_id" if fmt == "beir" else None, max_bytes=max_bytes)
        return
    yield _read_file(path, max_bytes)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _read_file(path: Path, max_bytes: int) -> ParsedDocument | RejectedInput:
    uri = path.as_uri()
    size = path.stat().st_size
    if size > max_bytes:
        return RejectedInput(uri, f"file is {size} bytes, over the {max_bytes}-byte limit", raw="")
    data = path.read_bytes()
    mime = MIME_BY_SUFFIX.get(path.suffix.lower(), "text/plain")
    try:
        text = decode_text(data)
        title, body = PARSERS.get(mime, PARSERS["text/plain"])(text, path.stem.replace("_", " "))
    except ParseError as exc:
        return RejectedInput(uri, str(exc), raw=data[:RAW_KEEP].decode("utf-8", "replace"))
    return ParsedDocument(document_id(uri), title, body, uri, mime, {"path": str(path), "bytes": size})


_ID_FIELDS = ("_id", "id", "doc_id")
_TEXT_FIELDS = ("text", "body", "content")


def _read_jsonl(path: Path, id_field: str | None, max_bytes: int) -> Iterator[ParsedDocument | RejectedInput]:
    base = path.as_uri()
    with path.open("rb") as fh:
        for lineno, raw_line in enumerate(fh, start=1):
            uri = f"{base}#L{lineno}"
            if not raw_line.strip():
                continue  # blank lines are not inputs
            raw = raw_line[:RAW_KEEP].decode("utf-8", "replace")
            if len(raw_line) > max_bytes:
                yield RejectedInput(
                    uri, f"line is {len(raw_line)} bytes, over the {max_bytes}-byte limit", raw
                )
                continue
            try:
                record = json.loads(decode_text(raw_line))
            except (ParseError, json.JSONDecodeError) as exc:
                yield RejectedInput(uri, f"line {lineno} is not valid JSON: {exc}", raw)
                continue
            if not isinstance(record, dict):
                yield RejectedInput(uri, f"line {lineno} is JSON but not an object", raw)
                continue
            fields = (id_field,) if id_field else _ID_FIELDS
            given = next((record[f] for f in fields if record.get(f) not in (None, "")), None)
            text = next((record[f] for f in _TEXT_FIELDS if isinstance(record.get(f), str)), None)
            if text is None:
                yield RejectedInput(
                    uri,
                    f"line {lineno} has no text field ({'/'.join(_TEXT_FIELDS)})",
                    raw,
                    input_id=None if given is None else str(given),
                )
                continue
            doc_id = document_id(uri, None if given is None else str(given))
            title = str(record.get("title") or doc_id)
            extra = {k: v for k, v in record.items() if k not in (*_ID_FIELDS, *_TEXT_FIELDS, "title")}
            yield ParsedDocument(
                doc_id, title, text.strip(), uri, "application/json", {"line": lineno, **extra}
            )
