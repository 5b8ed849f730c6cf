"""Stable ids derived from content and source, so that re-running is idempotent."""

from __future__ import annotations

import hashlib


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def document_id(source_uri: str, given: str | None = None) -> str:
    """A given id (JSONL/BEIR `_id`) is kept; otherwise the id is derived from the source."""
    if given is not None and str(given).strip():
        return str(given).strip()
    return "doc-" + hashlib.sha1(source_uri.encode()).hexdigest()[:16]


def chunk_id(doc_id: str, doc_hash: str, index: int) -> str:
    # Includes the document's content hash: a changed document gets new chunk ids, so stale
    # vectors can never be mistaken for current ones.
    return hashlib.sha1(f"{doc_id}\x00{doc_hash}\x00{index}".encode()).hexdigest()[:20]
