"""Read sources (folders, files, JSONL, BEIR corpora) into parsed documents and rejected inputs.

Every input (a file, or a line of a JSONL file) ends as exactly one of the three, so counts add up:
a parsed document, a rejected input, or a file known unchanged. A file whose size and mtime are
those recorded when it was last ingested (`known`) is not read again: a re-run costs what changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_from_bytes

from pipelines.ids import document_id
from pipelines.ingest.parsers import MIME_BY_SUFFIX, PARSERS, ParseError, decode_text, parse_pdf

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
    source_stat: str | None = None  # "<bytes>:<mtime_ns>" of its file; None for a JSONL line


@dataclass
class RejectedInput:
    source_uri: str
    reason: str
    raw: str
    input_id: str | None = None


@dataclass
class Unchanged:
    """A file with the size and mtime recorded at its last ingest: not read."""

    source_uri: str


@dataclass
class SourceBatch:
    documents: list[ParsedDocument] = field(default_factory=list)
    rejected: list[RejectedInput] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # source URIs of files not read again

    @property
    def inputs(self) -> int:
        return len(self.documents) + len(self.rejected) + len(self.unchanged)


@dataclass(frozen=True)
class ReadOptions:
    """How sources are read: format, size limit, folder globs, JSONL field names."""

    fmt: SourceFormat = "auto"
    max_bytes: int = 5_000_000
    include: tuple[str, ...] = ()  # globs on the path relative to the folder; empty = everything
    exclude: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()  # JSONL: (ragline field, record field), e.g. ("text", "body")

    def field(self, name: str) -> str | None:
        return dict(self.fields).get(name)


def read_sources(
    sources: Iterable[str | Path],
    fmt: SourceFormat = "auto",
    max_bytes: int = 5_000_000,
    options: ReadOptions | None = None,
    known: Mapping[str, str] | None = None,
) -> SourceBatch:
    """KNOWN: source URI -> `source_stat` of the files stored already (`tables.source_stats`)."""
    opts = options or ReadOptions(fmt=fmt, max_bytes=max_bytes)
    unknown = {k for k, _ in opts.fields} - {"id", "title", "text"}
    if unknown:
        raise ValueError(f"unknown JSONL field mapping {sorted(unknown)}; map id, title or text")
    batch = SourceBatch()
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"source {source} does not exist")
        for item in _read_one(path.resolve(), opts.fmt, opts, known or {}):
            if isinstance(item, Unchanged):
                batch.unchanged.append(item.source_uri)
            else:
                (batch.documents if isinstance(item, ParsedDocument) else batch.rejected).append(item)
    return batch


def source_root_uri(source: str | Path) -> str:
    """The URI prefix of every input read from SOURCE (for pruning)."""
    path = Path(source).expanduser().resolve()
    return path.as_uri() + ("/" if path.is_dir() else "")


def _read_one(
    path: Path, fmt: SourceFormat, opts: ReadOptions, known: Mapping[str, str]
) -> Iterator[ParsedDocument | RejectedInput | Unchanged]:
    if path.is_dir():
        if fmt == "beir" or (
            fmt == "auto" and (path / "corpus.jsonl").is_file() and (path / "qrels").is_dir()
        ):
            yield from _read_jsonl(path / "corpus.jsonl", "beir", opts)
            return
        for rel, entry in _walk(path):
            if _selected(rel, opts):
                yield from _read_path(entry.path, entry.stat(), fmt, opts, known)
        return
    yield from _read_path(str(path), path.stat(), fmt, opts, known)


def _read_path(
    path: str, st: os.stat_result, fmt: SourceFormat, opts: ReadOptions, known: Mapping[str, str]
) -> Iterator[ParsedDocument | RejectedInput | Unchanged]:
    """PATH (absolute, normalised) as a JSONL file's lines or one file. A string, not a Path, until
    it is read: a Path costs more than the stat that decides a known file is unchanged."""
    if fmt in ("jsonl", "beir") or (fmt == "auto" and path.endswith(".jsonl")):
        yield from _read_jsonl(Path(path), fmt, opts)
        return
    uri = file_uri(path)
    stat = f"{st.st_size}:{st.st_mtime_ns}"
    if known.get(uri) == stat:
        yield Unchanged(uri)
        return
    yield _read_file(Path(path), uri, stat, st.st_size, opts.max_bytes)


def file_uri(path: str) -> str:
    """`Path(path).as_uri()` for an absolute, normalised POSIX path, without making the Path."""
    return "file://" + quote_from_bytes(os.fsencode(path))


def _walk(root: Path, rel: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(path relative to ROOT, entry) of every file below ROOT in path order (each folder's names
    sorted, depth first); hidden names are skipped, symlinked folders not followed. os.scandir,
    not Path.rglob: a folder's listing carries each entry's type, so a re-run over 100,000
    unchanged files costs one stat each, not three."""
    with os.scandir(root) as listing:
        entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), f"{rel}{entry.name}/")
            elif entry.is_file():
                yield f"{rel}{entry.name}", entry


def _selected(rel: str, opts: ReadOptions) -> bool:
    if not opts.include and not opts.exclude:
        return True
    name = rel.rsplit("/", 1)[-1]

    def match(globs: tuple[str, ...]) -> bool:
        return any(fnmatch(rel, g) or fnmatch(name, g) for g in globs)

    return (not opts.include or match(opts.include)) and not match(opts.exclude)


def _read_file(path: Path, uri: str, stat: str, size: int, max_bytes: int) -> ParsedDocument | RejectedInput:
    if size > max_bytes:
        return RejectedInput(uri, f"file is {size} bytes, over the {max_bytes}-byte limit", raw="")
    data = path.read_bytes()
    mime = MIME_BY_SUFFIX.get(path.suffix.lower(), "text/plain")
    if mime == "application/pdf":
        try:
            title, body, pages = parse_pdf(data, path.stem.replace("_", " "))
        except ParseError as exc:
            return RejectedInput(uri, str(exc), raw=f"<{size} bytes of PDF>")
        return ParsedDocument(
            document_id(uri), title, body, uri, mime, {"path": str(path), "bytes": size, "pages": pages}, stat
        )
    try:
        text = decode_text(data)
        title, body = PARSERS.get(mime, PARSERS["text/plain"])(text, path.stem.replace("_", " "))
    except ParseError as exc:
        return RejectedInput(uri, str(exc), raw=data[:RAW_KEEP].decode("utf-8", "replace"))
    return ParsedDocument(document_id(uri), title, body, uri, mime, {"path": str(path), "bytes": size}, stat)


_ID_FIELDS = ("_id", "id", "doc_id")
_TEXT_FIELDS = ("text", "body", "content")


def _read_jsonl(path: Path, fmt: str, opts: ReadOptions) -> Iterator[ParsedDocument | RejectedInput]:
    base = path.as_uri()
    max_bytes = opts.max_bytes
    id_fields = (opts.field("id"),) if opts.field("id") else ("_id",) if fmt == "beir" else _ID_FIELDS
    text_fields = (opts.field("text"),) if opts.field("text") else _TEXT_FIELDS
    title_field = opts.field("title") or "title"
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
            given = next((record[f] for f in id_fields if record.get(f) not in (None, "")), None)
            text = next((record[f] for f in text_fields if isinstance(record.get(f), str)), None)
            if text is None:
                yield RejectedInput(
                    uri,
                    f"line {lineno} has no text field ({'/'.join(map(str, text_fields))})",
                    raw,
                    input_id=None if given is None else str(given),
                )
                continue
            doc_id = document_id(uri, None if given is None else str(given))
            title = str(record.get(title_field) or doc_id)
            used = {*id_fields, *text_fields, title_field}
            extra = {k: v for k, v in record.items() if k not in used}
            yield ParsedDocument(
                doc_id, title, text.strip(), uri, "application/json", {"line": lineno, **extra}
            )
