"""The feature ranker (retrieval/ltr.py): its features, how it reorders, its JSON file, and the one
retriever serving a champion that carries one (on a real LanceDB table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.index.indexes import build_indexes
from pipelines.retrieval import RetrievalConfig, Retriever
from pipelines.retrieval.ltr import FEATURES, MODEL_FILE, FeatureRanker, features
from pipelines.retrieval.query import Hit
from pipelines.schemas import index_schema
from pipelines.store import ModelInfo, Store
from tests.pipelines.index.test_indexes import _rows

COVERAGE = FEATURES.index("text_coverage")


def _hits() -> list[Hit]:
    texts = ["flour and water", "the lighthouse lamp is lit at dusk", "tea is steamed"]
    return [
        Hit(
            f"c{i}",
            f"d{i}",
            "t",
            text,
            1.0 - i / 10,
            similarity=0.5 - i / 10 if i < 2 else None,
            text_score=3.0 - i,
        )
        for i, text in enumerate(texts)
    ]


def _coverage_ranker(path: str | Path = "") -> FeatureRanker:
    weights = np.zeros(len(FEATURES))
    weights[COVERAGE] = 1.0
    return FeatureRanker(weights, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), path)


def test_features_describe_each_hit_relative_to_the_query_best() -> None:
    rows = features("when is the lighthouse lamp lit?", _hits())
    assert rows.shape == (3, len(FEATURES))
    col = dict(zip(FEATURES, rows.T, strict=True))
    assert col["fused_position"].tolist() == [1.0, 0.5, pytest.approx(1 / 3)]
    assert col["text_coverage"][1] == 1.0 and col["text_coverage"][0] == 0.0  # lighthouse, lamp, lit
    assert col["has_similarity"].tolist() == [1.0, 1.0, 0.0]
    assert col["similarity"][2] < col["similarity"][1]  # a hit the vector search missed ranks below it
    assert col["bm25"][0] == 1.0 and features("q", []).shape == (0, len(FEATURES))


def test_the_first_depth_hits_are_reordered_and_the_rest_keep_their_place() -> None:
    hits = _hits()
    (out,) = _coverage_ranker().rerank_many(["when is the lighthouse lamp lit?"], [hits], depth=2)
    assert [h.id for h in out] == ["c1", "c0", "c2"] and out[2] == hits[2]
    assert _coverage_ranker().rerank_many(["q"], [[]], depth=5) == [[]]


def test_a_ranker_round_trips_through_its_json_file_and_refuses_other_features(tmp_path: Path) -> None:
    ranker = _coverage_ranker()
    folder = ranker.save(tmp_path / "r")
    loaded = FeatureRanker.load(folder)
    assert loaded.model_path == folder.resolve() and np.allclose(loaded.weights, ranker.weights)
    assert loaded.to_dict() == ranker.to_dict()
    data = ranker.to_dict() | {"features": ["fused_position"]}
    (folder / MODEL_FILE).write_text(__import__("json").dumps(data))
    with pytest.raises(ValueError, match="other features"):
        FeatureRanker.load(folder)
    with pytest.raises(FileNotFoundError, match=MODEL_FILE):
        FeatureRanker.load(tmp_path / "none")
    with pytest.raises(ValueError, match="weights"):
        FeatureRanker([1.0], [0.0], [1.0])


def test_a_champion_with_a_feature_ranker_is_served_by_the_one_retriever(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lake"))
    model = ModelInfo("m", "abcdef0123456789", 16)
    table = store.index_table("c", model)
    Store.upsert(table, _rows(200).cast(index_schema(16)))
    build_indexes(table)
    store.set_active_index("c", table.name, model)
    q = _rows(200).column("vector")[7].values.to_numpy()
    plain = Retriever(store, "c", RetrievalConfig(top_k=5)).retrieve("word42", q)
    by_doc = {h.doc_id: h for h in plain}  # hybrid hits keep the BM25 of the full-text search
    assert all((by_doc[d].text_score or 0) > 0 for d in ("d42", "d139"))
    assert by_doc["d7"].similarity == pytest.approx(1.0, abs=1e-4) and by_doc["d7"].text_score is None

    folder = _coverage_ranker().save(tmp_path / "ranker")
    spec = {"path": str(folder), "name": "c-ranker", "uri": "", "kind": "features"}
    store.set_champion(
        "c", {"name": "c", "version": "1", "retrieval": {"rerank_depth": 10}, "reranker": spec}
    )
    served = Retriever.champion(store, "c", RetrievalConfig(top_k=5), reranker_cache=tmp_path / "cache")
    assert isinstance(served.reranker, FeatureRanker) and served.to_dict()["reranker"] == str(
        folder.resolve()
    )
    hits = served.retrieve("word42", q)
    assert {hits[0].doc_id, hits[1].doc_id} == {"d42", "d139"}  # the two rows whose text holds word42
