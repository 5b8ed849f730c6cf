"""The one retriever on a real LanceDB table: hits carry the query's similarity where the vector
search found them (the evidence that refusal is calibrated on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipelines.index.indexes import build_indexes
from pipelines.retrieval import RetrievalConfig, Retriever
from pipelines.schemas import index_schema
from pipelines.store import ModelInfo, Store
from tests.pipelines.index.test_indexes import _rows

MODEL = ModelInfo("m", "abcdef0123456789", 16)


def _collection(folder: Path, rows: pa.Table, indexed: bool = True) -> tuple[Store, Any]:
    """Collection "c" in a store at FOLDER: an index table of ROWS, active."""
    store = Store(str(folder))
    table = store.index_table("c", MODEL)
    Store.upsert(table, rows.cast(index_schema(16)))
    if indexed:
        build_indexes(table)
    store.set_active_index("c", table.name, MODEL)
    return store, table


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory) -> Retriever:
    store, _ = _collection(tmp_path_factory.mktemp("retriever"), _rows(200))
    return Retriever(store, "c", RetrievalConfig(top_k=5))


def test_vector_hits_carry_their_similarity_to_the_query(retriever: Retriever) -> None:
    q = _rows(200).column("vector")[7].values.to_numpy()
    hits = retriever.retrieve("", q, mode="vector")
    assert hits[0].id == "r7" and hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert all(h.similarity is not None and -1 <= h.similarity <= 1 for h in hits)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)


def test_text_hits_have_no_similarity_and_hybrid_keeps_the_vector_ones(retriever: Retriever) -> None:
    text = retriever.retrieve("word42", mode="text")
    assert text and all(h.similarity is None for h in text)
    q = _rows(200).column("vector")[42].values.to_numpy()
    hybrid = retriever.retrieve("word42", q, mode="hybrid")
    assert hybrid[0].id == "r42" and hybrid[0].similarity == pytest.approx(1.0, abs=1e-4)


def test_the_threshold_an_evaluation_learned_serves_until_a_champion_brings_its_own(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    store, table = _collection(tmp_path_factory.mktemp("refusal"), _rows(20), indexed=False)
    assert Retriever.champion(store, "c").min_similarity is None  # nothing learned: never refuses
    store.set_refusal("c", 0.31)
    assert Retriever.champion(store, "c").min_similarity == pytest.approx(0.31)
    store.set_active_index("c", table.name, MODEL)  # a re-embed with the same model keeps it
    assert store.refusal("c") == pytest.approx(0.31)
    store.set_champion("c", {"name": "c", "version": "1", "refusal": {"min_similarity": 0.4}})
    assert Retriever.champion(store, "c").min_similarity == pytest.approx(0.4)  # the champion's wins
    store.set_champion("c", None)
    other = ModelInfo("m2", "fedcba9876543210", 16)  # another model's similarities: learned anew
    store.set_active_index("c", store.index_table("c", other).name, other)
    assert store.refusal("c") is None


def test_the_reranker_reorders_the_first_hits_and_top_k_is_cut_after_it(retriever: Retriever) -> None:
    from pipelines.models import default_embedding_model_path
    from pipelines.retrieval.rerank import Reranker

    q = _rows(200).column("vector")[7].values.to_numpy()
    plain = retriever.retrieve("word7", q, mode="hybrid", top_k=3)
    reranked = Retriever(retriever.store, "c", RetrievalConfig(top_k=5, rerank_depth=8))
    reranked.reranker = Reranker(default_embedding_model_path())
    hits = reranked.retrieve("word7", q, mode="hybrid", top_k=3)
    assert len(hits) == 3 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # the 3 shown are the cross-encoder's best of the first 8 fused hits, not the fused top 3
    eight = retriever.retrieve("word7", q, mode="hybrid", top_k=8)
    assert {h.id for h in hits} <= {h.id for h in eight}
    assert reranked.reranker.rerank_many(["word7"], [eight], 8)[0][:3] == hits
    assert len(plain) == 3
    # without a reranker, rerank_depth changes nothing
    assert (
        Retriever(retriever.store, "c", RetrievalConfig(rerank_depth=8)).retrieve("word7", q, top_k=3)
        == plain
    )


def test_the_length_prior_moves_long_documents_by_what_the_two_searches_found(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from datetime import timedelta

    from pipelines.retrieval.fusion import rrf_fuse

    rows = _rows(120)
    # documents of 1 to 40 chunks: d0 has 40, d1 20, d2 10, the rest one each
    doc_ids = ["d0"] * 40 + ["d1"] * 20 + ["d2"] * 10 + [f"d{i}" for i in range(3, 53)]
    rows = rows.set_column(rows.schema.get_field_index("doc_id"), "doc_id", pa.array(doc_ids))
    store, table = _collection(tmp_path_factory.mktemp("documents"), rows)
    q = rows.column("vector")[3].values.to_numpy()
    single = Retriever(store, "c", RetrievalConfig(top_k=30))
    vector, text = single.retrieve("", q, mode="vector"), single.retrieve("word3 row", mode="text")
    counts = {"d0": 40, "d1": 20, "d2": 10}
    doc_of = {h.id: h.doc_id for h in vector + text}
    for prior in (0.0, 0.5, 1.0):
        expected = rrf_fuse(
            [([h.id for h in vector], 1.0), ([h.id for h in text], 1.0)],
            60,
            lambda chunk, p=prior: float(counts.get(doc_of[chunk], 1)) ** p,
        )
        config = RetrievalConfig(top_k=10, length_prior=prior)
        hits = Retriever(store, "c", config).retrieve("word3 row", q)
        assert [h.id for h in hits] == sorted(expected, key=lambda i: (-expected[i], i))[:10]
        assert [h.score for h in hits] == [pytest.approx(expected[h.id], abs=1e-6) for h in hits]
    moved = Retriever(store, "c", RetrievalConfig(top_k=10, length_prior=1.0)).retrieve("word3 row", q)
    plain = Retriever(store, "c", RetrievalConfig(top_k=10)).retrieve("word3 row", q)
    assert sum(h.doc_id == "d0" for h in moved) < sum(h.doc_id == "d0" for h in plain)
    # the chunk counts follow the table (as serving reads it, rechecking its version): a document's
    # new chunks are counted in the next search
    live = Store(store.uri, read_consistency=timedelta(0))
    retriever = Retriever(live, "c", RetrievalConfig(length_prior=0.5))
    retriever.retrieve("word3", q)
    assert retriever._counts is not None and retriever._counts[1]["d2"] == 10
    more = _rows(5, start=200).set_column(1, "doc_id", pa.array(["d2"] * 5))
    Store.upsert(table, more.cast(index_schema(16)))
    retriever.retrieve("word3", q)
    assert retriever._counts[1]["d2"] == 15
    assert sum(retriever._counts[1].values()) == table.count_rows() == 125
