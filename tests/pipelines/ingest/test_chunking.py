import polars as pl
import pytest

from pipelines.ingest.chunking import Chunker, ChunkingConfig
from pipelines.models import default_embedding_model_path


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(default_embedding_model_path(), ChunkingConfig(chunk_tokens=40, overlap=8))


def _docs(*texts: str) -> pl.DataFrame:
    n = len(texts)
    return pl.DataFrame(
        {
            "id": [f"d{i}" for i in range(n)],
            "title": ["t"] * n,
            "text": list(texts),
            "content_hash": [f"h{i}" for i in range(n)],
            "source_uri": ["u"] * n,
        }
    )


def test_windows_respect_size_and_overlap(chunker: Chunker) -> None:
    words = " ".join(f"word{i}" for i in range(120))  # each "wordN" is several word pieces
    chunks = chunker.chunk(_docs(words, "short text"))
    long = chunks.filter(pl.col("doc_id") == "d0").sort("chunk_index")
    assert long.height > 3
    assert long["token_count"].max() <= 40
    assert long["chunk_index"].to_list() == list(range(long.height))
    # consecutive chunks overlap: the next starts before the previous ends
    ends = (long["char_start"] + long["char_count"]).to_list()
    assert all(s < e for s, e in zip(long["char_start"].to_list()[1:], ends[:-1], strict=True))
    # together the chunks cover the whole text
    assert long["char_start"][0] == 0 and ends[-1] == len(words)
    short = chunks.filter(pl.col("doc_id") == "d1")
    assert short.height == 1 and short["text"][0] == "short text"


def test_chunk_ids_are_stable_and_unique(chunker: Chunker) -> None:
    docs = _docs("alpha beta gamma " * 40, "delta")
    a, b = chunker.chunk(docs), chunker.chunk(docs)
    assert a["id"].to_list() == b["id"].to_list()
    assert a["id"].n_unique() == a.height
    changed = chunker.chunk(docs.with_columns(content_hash=pl.lit("new")))
    assert set(changed["id"]).isdisjoint(set(a["id"]))  # a changed document gets new chunk ids


def test_empty_input(chunker: Chunker) -> None:
    assert chunker.chunk(_docs()).is_empty()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ChunkingConfig(chunk_tokens=100, overlap=100)
