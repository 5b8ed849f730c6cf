"""`optimize` with its `finetune` stage: a real, time-budgeted fine-tuning of the embedder through
Ray Train on pairs that include a feedback export, logged and registered in MLflow, re-embedded into
its own table, promoted or refused by the held-out gate; then the running Serve app follows a
champion that brings the tuned model.

Here, beside the serving tests, and not in tests/flows: the session's Serve app starts with the first
test that needs it, and while it runs, a `serve deploy` of another app (tests/infra, tests/ragline)
was answered by this one (a clash of the two apps, not yet understood)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest

from benchmarks.corpus import chunk_frame
from flows.embed import embed_flow
from flows.ingest import ingest_flow
from flows.optimize import optimize_flow
from pipelines.ingest import tables as ingest
from pipelines.optimization.finetune import LINEAGE_FILE
from pipelines.settings import Settings, get_settings
from pipelines.store import Store
from tests.flows.beir_mini import write_beir_mini

COLLECTION = "tune-mini"
NEW_TEXT = "Quillon the harbour zebra was fed oats by the lighthouse keeper every evening at dusk."


@pytest.fixture(scope="module")
def beir(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> Path:
    root = write_beir_mini(tmp_path_factory.mktemp("beir-tune"))
    ingest_flow([str(root)], COLLECTION, format="beir")
    embed_flow(COLLECTION)
    return root


@pytest.fixture(scope="module")
def feedback(beir: Path, service: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three chats in the running app, rated up, up and down, then `ragline feedback export`."""
    ratings = {}
    for question, rating in [
        ("What does the with statement do?", 1),
        ("How do I raise an exception?", 1),
        ("What does the pass statement do?", -1),
    ]:
        chat = httpx.post(
            f"{service}/v1/chat", json={"message": question, "collection": COLLECTION}, timeout=300
        ).json()
        rated = httpx.post(
            f"{service}/v1/feedback", json={"message_id": chat["message_id"], "rating": rating}, timeout=30
        )
        assert rated.status_code == 200, rated.text
        ratings[chat["message_id"]] = (rating, question, chat)
    dest = tmp_path_factory.mktemp("feedback") / "export"
    done = subprocess.run(
        [sys.executable, "-m", "ragline", "feedback", "export", str(dest), "-c", COLLECTION, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {"dest": dest, "counts": json.loads(done.stdout.strip().splitlines()[-1]), "ratings": ratings}


@pytest.fixture(scope="module")
def tuned(beir: Path, feedback: dict[str, Any]) -> dict[str, Any]:
    """`optimize` with a fine-tuning stage and the feedback export: a config search that promotes the
    first champion, then the embedder fine-tuned for it (the finetune flow), gated on the held-out split."""
    base_table = Store.from_settings(get_settings()).active_index(COLLECTION).name
    started = time.monotonic()
    opt = optimize_flow(
        COLLECTION, str(beir), trials=2, chunking=False, finetune_budget_s=45, feedback=str(feedback["dest"])
    )
    assert opt["champion"] and opt["finetune"]
    return {
        **opt["finetune"],
        "wall_s": time.monotonic() - started,
        "base_table": base_table,
        "optimize": opt,
    }


def test_feedback_export_is_an_evaluation_set_with_ratings(feedback: dict[str, Any]) -> None:
    counts, dest = feedback["counts"], feedback["dest"]
    rows = [json.loads(line) for line in (dest / "ratings.jsonl").read_text().splitlines()]
    # every rating of the collection is accounted for: exported, or skipped with a reason
    assert counts["exported"] + sum(counts["skipped"].values()) == counts["ratings"] >= 3
    assert counts["exported"] == len(rows) >= 2 and counts["up"] >= 1
    qrels = [line.split("\t") for line in (dest / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    queries = {json.loads(line)["_id"] for line in (dest / "queries.jsonl").read_text().splitlines()}
    for row in rows:
        rating, question, chat = feedback["ratings"][row["message_id"]]
        assert row["question"] == question and row["answer"] == chat["answer"]
        assert row["rating"] == rating and row["passages"] and row["query_id"] in queries
        cited_docs = {p["doc_id"] for p in row["passages"]}
        assert cited_docs <= {s["doc_id"] for s in chat["sources"]}
        # up: the cited documents are relevant; down: they count against those documents
        assert {(d, s) for q, d, s in qrels if q == row["query_id"]} == {
            (d, "1" if rating > 0 else "0") for d in cited_docs
        }


def test_finetune_trains_registers_and_gates_on_the_held_out_split(
    tuned: dict[str, Any], settings: Settings
) -> None:
    pairs, training = tuned["pairs"], tuned["training"]
    # all three sources: the search split's qrels, the rated-up answers' citations, the corpus
    assert pairs["qrels"] > 0 and pairs["synthetic"] > 0 and pairs["feedback"] >= 1
    assert pairs["with_negative"] == pairs["total"]  # a hard negative from another document each
    assert training["steps"] >= 1 and training["device"] == "cpu"
    # the budget holds: the trainer stops itself at 90% of it, model start-up and saving included
    assert training["seconds"] <= 45 * 1.3, training
    if training["stopped_by_budget"]:
        assert training["steps"] < training["planned_steps"]

    # the tuned model is its own: a folder with its lineage, another fingerprint, its own table
    model = Path(tuned["model"]["path"])
    lineage = json.loads((model / LINEAGE_FILE).read_text())
    assert lineage["collection"] == COLLECTION and lineage["mlflow_run_id"] == tuned["mlflow_run_id"]
    store = Store.from_settings(settings)
    table = store.index_table_named(COLLECTION, tuned["model"]["table"])
    assert table.count_rows() == store.chunks(COLLECTION).count_rows()
    base = store.index_table_named(COLLECTION, tuned["base_table"])
    assert Store.model_of(table).path_hash != Store.model_of(base).path_hash

    # registered in MLflow with its lineage, loadable as a sentence-transformers model
    client = mlflow.MlflowClient(settings.mlflow_uri)
    version = client.get_model_version(f"{COLLECTION}-embedder", tuned["model"]["version"])
    assert version.tags["index_table"] == table.name and json.loads(version.tags["pairs"]) == pairs
    assert version.tags["promoted"] == str(tuned["promoted"])
    mlflow.set_tracking_uri(settings.mlflow_uri)
    loaded = mlflow.sentence_transformers.load_model(tuned["model"]["uri"])
    assert loaded.encode(["a question"]).shape == (1, 384)

    # a reranker trained from the packaged MiniLM weights on the same pairs, scored at two depths
    scores, chosen = tuned["scores"], tuned["chosen"]
    assert (Path(tuned["reranker"]["path"]) / "config.json").is_file()
    assert {"search_tuned_rerank5", "holdout_tuned_rerank10"} <= set(scores)
    # the search split chose the challenger; the gate: promoted exactly when it beats the incumbent
    # on the held-out split
    challengers = [k.removeprefix("search_") for k in scores if k.startswith("search_tuned")]
    assert chosen == max(challengers, key=lambda c: scores[f"search_{c}"]["ndcg@10"])
    better = scores[f"holdout_{chosen}"]["ndcg@10"] > scores["holdout_incumbent"]["ndcg@10"]
    assert tuned["promoted"] is better
    champion = store.champion(COLLECTION)
    assert champion is not None  # the config search promoted the first champion
    if better:
        assert champion["embedder"]["index_table"] == table.name
        # a reranking challenger (the cross-encoder at a depth, or the relearned feature ranker)
        # brings its reranker into the champion; the plain tuned embedder brings none
        reranker = champion.get("reranker") or {}
        assert bool(reranker) is (chosen != "tuned")
        if reranker:
            assert reranker["kind"] == ("features" if chosen == "tuned_features" else "cross-encoder")
        assert store.active_index(COLLECTION).name == table.name
        assert tuned["optimize"]["champion"]["version"] == tuned["champion"]["version"]
    else:  # refused: serving keeps the config search's champion and its table
        assert not champion.get("embedder") and store.active_index(COLLECTION).name == tuned["base_table"]


def _search(url: str, query: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/search", json={"query": query, "collection": COLLECTION}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _until(url: str, table: str, query: str) -> dict[str, Any]:
    deadline = time.monotonic() + 40
    body = _search(url, query)
    while not body["config_version"].startswith(f"{table}@") and time.monotonic() < deadline:
        time.sleep(1)
        body = _search(url, query)
    return body


def test_the_running_app_follows_a_champion_with_a_tuned_embedder(
    tuned: dict[str, Any], service: str, settings: Settings
) -> None:
    """Whatever the gate said, a champion that brings the tuned model and the reranker (as `promote`
    writes it) is served with them, without a restart, the model fetched from MLflow where its folder
    is missing, and the base model again once it is demoted."""
    store = Store.from_settings(settings)
    base_table = tuned["base_table"]
    info = Store.model_of(store.index_table_named(COLLECTION, tuned["model"]["table"]))
    embedder = {
        # not on "this node": the app fetches the model from MLflow, with the fingerprint its table records
        "path": str(Path(tuned["model"]["path"]).with_name("elsewhere")),
        "name": info.name,
        "path_hash": info.path_hash,
        "index_table": tuned["model"]["table"],
        "uri": tuned["model"]["uri"],
    }
    previous = store.champion(COLLECTION)
    store.set_champion(
        COLLECTION,
        {
            "name": COLLECTION,
            "version": "99",
            "index_table": tuned["model"]["table"],
            "embedder": embedder,
            "retrieval": {"rerank_depth": 5},
            "reranker": tuned["reranker"],
        },
    )
    query = "What does the with statement do?"
    try:
        body = _until(service, tuned["model"]["table"], query)
        assert body["config_version"].startswith(f"{tuned['model']['table']}@"), body["config_version"]
        assert body["results"], body  # queries embedded by the tuned model: no 409, real hits
        # ... and reordered by the trained reranker: its scores, a probability each, best first
        assert body["config_version"].endswith("+rerank5"), body["config_version"]
        top = [r["score"] for r in body["results"]]
        assert top == sorted(top, reverse=True) and all(0.0 <= x <= 1.0 for x in top)

        # a new chunk reaches the champion's table too: `ragline embed` embeds it with both models
        ingest.write_chunks(store, COLLECTION, [], chunk_frame([NEW_TEXT], prefix="fresh"))
        assert embed_flow(COLLECTION)["champion_table"] == tuned["model"]["table"]
        deadline = time.monotonic() + 40
        while "fresh0" not in (ids := [r["id"] for r in _search(service, NEW_TEXT)["results"]]):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "fresh0" in ids  # among the hits the reranker reorders (a briefly trained one)
    finally:
        store.set_champion(COLLECTION, None)
    body = _until(service, base_table, query)
    assert body["config_version"].startswith(f"{base_table}@") and body["results"]
    if previous:
        store.set_champion(COLLECTION, previous)
