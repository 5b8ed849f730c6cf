"""Embedding into LanceDB on a real local Ray, with the packaged MiniLM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from benchmarks.corpus import chunk_frame
from pipelines.index.embedding import Embedder, embed_collection
from pipelines.ingest import tables as ingest
from pipelines.models import default_embedding_model_path
from pipelines.retrieval import Retriever
from pipelines.settings import Settings
from pipelines.store import Store

pytestmark = pytest.mark.usefixtures("ray_session")

TEXTS = [
    "Glaciers carve U-shaped valleys as they slowly move downhill under their own weight.",
    "A sonnet is a fourteen-line poem, traditionally written in iambic pentameter.",
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen.",
]


@pytest.fixture()
def store(settings: Settings) -> Store:
    return Store(settings.lancedb_location)


def _ids(table) -> list[str]:  # type: ignore[no-untyped-def]
    return table.to_arrow().column("id").to_pylist()


def test_incremental_runs_embed_only_new_chunks_and_both_indexes_see_them(
    store: Store, embedder: Embedder
) -> None:
    ingest.write_chunks(store, "inc", [], chunk_frame(TEXTS[:2], prefix="a"))
    first = embed_collection(store, "inc")
    assert (first.embedded, first.skipped) == (2, 0)
    again = embed_collection(store, "inc")
    assert (again.embedded, again.skipped, again.table_version) == (0, 2, first.table_version)

    ingest.write_chunks(store, "inc", [], chunk_frame(TEXTS[2:], prefix="b"))
    third = embed_collection(store, "inc")
    assert (third.embedded, third.skipped) == (1, 2)
    index = store.active_index("inc")
    assert sorted(_ids(index)) == ["a0", "a1", "b0"]  # each chunk exactly once

    retriever = Retriever(store, "inc")
    query = "photosynthesis glucose"
    vec = embedder.embed([query])[0]
    assert retriever.retrieve(query, vec, mode="text")[0].id == "b0"  # FTS covers rows added later
    assert retriever.retrieve(query, vec, mode="vector")[0].id == "b0"


def test_removed_chunks_lose_their_vectors(store: Store) -> None:
    ingest.write_chunks(store, "prune", [], chunk_frame(TEXTS, prefix="p"))
    embed_collection(store, "prune")
    store.chunks("prune").delete("id = 'p1'")
    result = embed_collection(store, "prune")
    assert (result.embedded, result.deleted) == (0, 1)
    assert sorted(_ids(store.active_index("prune"))) == ["p0", "p2"]


def test_another_model_gets_its_own_index_table(store: Store, tmp_path: Path) -> None:
    ingest.write_chunks(store, "models", [], chunk_frame(TEXTS, prefix="m"))
    first = embed_collection(store, "models")
    # A different model folder: same weights, but its own config, so its own fingerprint.
    other = tmp_path / "minilm-variant"
    shutil.copytree(default_embedding_model_path(), other)
    cfg = json.loads((other / "config_sentence_transformers.json").read_text())
    (other / "config_sentence_transformers.json").write_text(json.dumps({**cfg, "variant": "test"}))
    second = embed_collection(store, "models", model_path=other)
    assert second.table != first.table and second.embedded == 3
    assert store.active_index("models").name == second.table  # the collection now serves the new one
    assert store.model_of(store.active_index("models")).name == "minilm-variant"
    assert len(_ids(store.db.open_table(first.table))) == 3  # the old table stays, untouched


def test_progress_is_reported(store: Store) -> None:
    ingest.write_chunks(store, "progress", [], chunk_frame(TEXTS * 4, prefix="g"))
    seen: list[tuple[int, int]] = []
    embed_collection(store, "progress", write_every=4, on_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (12, 12)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_chunk_frame_matches_the_chunks_schema() -> None:
    from pipelines.schemas import CHUNKS

    assert pl.DataFrame(chunk_frame(TEXTS)).to_arrow().select(CHUNKS.names).cast(CHUNKS).num_rows == 3


def test_batched_retrieval_equals_one_by_one_and_embeds_only_what_needs_a_vector(
    store: Store, embedder: Embedder
) -> None:
    from lancedb.background_loop import LOOP

    from pipelines.retrieval import Query

    ingest.write_chunks(store, "batch", [], chunk_frame(TEXTS, prefix="q"))
    embed_collection(store, "batch")
    retriever = Retriever(store, "batch")
    questions = ["glacier valleys", "poem of fourteen lines", "light into glucose"]
    vectors = embedder.embed(questions)
    single = [retriever.retrieve(q, v) for q, v in zip(questions, vectors, strict=True)]
    assert [hits[0].id for hits in single] == ["q0", "q1", "q2"]
    batched = retriever.retrieve_many([Query(q, v) for q, v in zip(questions, vectors, strict=True)])
    assert [[h.id for h in hits] for hits in batched] == [[h.id for h in hits] for hits in single]

    asked: list[list[str]] = []

    async def embed(texts: list[str]) -> list[object]:
        asked.append(texts)
        return list(embedder.embed(texts))

    queries = [Query(questions[0]), Query(questions[1], mode="text"), Query(questions[2], mode="vector")]
    deferred = LOOP.run(retriever.aretrieve_many(queries, embed))
    assert asked == [[questions[0], questions[2]]]  # one call, for the two that need a vector
    assert [hits[0].id for hits in deferred] == ["q0", "q1", "q2"]

    async def broken(texts: list[str]) -> list[object]:
        raise RuntimeError("embedder down")

    with pytest.raises(RuntimeError, match="embedder down"):
        LOOP.run(retriever.aretrieve_many(queries, broken))
    text_only = LOOP.run(retriever.aretrieve_many([Query(questions[1], mode="text")], broken))
    assert text_only[0][0].id == "q1"
