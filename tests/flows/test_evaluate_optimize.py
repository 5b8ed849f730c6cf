"""`ragline ingest --format beir` → `embed` → `evaluate` → `optimize` on a small BEIR-layout set built
here, through the real CLI, Prefect, Ray, LanceDB and MLflow (read back through a real MLflow server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.settings import Settings
from tests.conftest import free_port
from tests.flows.beir_mini import write_beir_mini, write_feedback_export

COLLECTION = "beir-mini"


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir_mini(tmp_path_factory.mktemp("beir"))


def cli(*args: str) -> dict[str, Any]:
    """`ragline ARGS --json` as a user runs it, on this session's Ray cluster (RAY_ADDRESS) and
    Prefect server (PREFECT_API_URL, as beside `ragline up`): six commands, not six servers."""
    import ray
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()  # the session's temporary server (a no-op when the flows above started it)
    env = {**os.environ, "PREFECT_API_URL": server.api_url}
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    result = subprocess.run(
        [sys.executable, "-m", "ragline", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mlflow_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow server on the store the flows write: what the MLflow UI reads. Handed over only
    once it answers /health (the same start-and-wait that `ragline up` uses); a server that never
    comes up fails here with its log's last line."""
    from deployments import processes

    port = free_port()
    server = processes.spawn(
        "mlflow",
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", settings.mlflow_uri,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        dict(os.environ), tmp_path_factory.mktemp("mlflow-server") / "mlflow.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_healthy(f"{url}/health", [server], timeout_s=120, what="the MLflow server")
        yield url
    finally:
        processes.stop([server])


def test_beir_set_end_to_end_through_the_cli(beir_dir: Path, ray_session: None, mlflow_server: str) -> None:
    ingest = cli("ingest", str(beir_dir / "corpus.jsonl"), "--format", "beir", "-c", COLLECTION)
    assert ingest["documents"] == len((beir_dir / "corpus.jsonl").read_text().splitlines())
    assert cli("embed", "-c", COLLECTION)["embedded"] == ingest["chunks"]

    ev = cli("evaluate", "-c", COLLECTION, "--dataset", str(beir_dir))
    assert ev["queries"] == 15 and ev["rejected"]["rejected_qrels"] == 1
    m = ev["metrics"]
    assert {"ndcg@10", "recall@10", "mrr@10", "precision@5", "hit_rate@1"} <= set(m)
    assert m["ndcg@10"] > 0.5 and m["recall@10"] > 0.7  # the relevant topics are easy to find here
    # No champion yet: serving takes the refusal threshold this evaluation learned (if it has one).
    assert ev["refusal_learned"] == m.get("refusal_min_similarity")

    # The MLflow server (the UI's API) shows the run, its params, dataset and artifacts.
    run = httpx.get(f"{mlflow_server}/api/2.0/mlflow/runs/get", params={"run_id": ev["mlflow_run_id"]}).json()
    params = {p["key"]: p["value"] for p in run["run"]["data"]["params"]}
    assert params["retrieval_mode"] == "hybrid" and params["index_table"].startswith(COLLECTION)
    assert {"chunk_tokens", "embedding_model", "prompt_version", "retrieval_rrf_k"} <= set(params)
    metrics = {x["key"]: x["value"] for x in run["run"]["data"]["metrics"]}
    assert metrics["ndcg_at_10"] == pytest.approx(m["ndcg@10"], abs=1e-4)
    dataset = run["run"]["inputs"]["dataset_inputs"][0]
    assert dataset["dataset"]["name"] == beir_dir.name
    assert {t["key"] for t in dataset["tags"]} >= {"lancedb_table", "lancedb_version"}
    files = httpx.get(
        f"{mlflow_server}/api/2.0/mlflow/artifacts/list", params={"run_id": ev["mlflow_run_id"]}
    ).json()["files"]
    names = {f["path"] for f in files}
    assert {"per_query.parquet", "metrics_by_k.png", "failures.csv", "metrics.json"} <= names

    opt = cli("optimize", "-c", COLLECTION, "--dataset", str(beir_dir), "--trials", "4")
    assert opt["trials"] == 4 and opt["promoted"] is True  # the first champion
    assert opt["champion"]["name"] == COLLECTION and opt["champion"]["version"] == "1"
    import mlflow

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(COLLECTION, "champion").version) == "1"
    nested = client.search_runs(
        [run["run"]["info"]["experiment_id"]], f"tags.mlflow.parentRunId = '{opt['mlflow_run_id']}'"
    )
    names = {r.info.run_name for r in nested}
    assert {"trial-000", "trial-003", "holdout-best", "holdout-incumbent"} <= names
    # The winner's feature ranker: learned on the search split, kept only if it won under CV.
    ranker = opt["ranker"]
    assert ranker["queries"] >= 8 and ranker["cv_fused_ndcg@10"] > 0.5, ranker
    parent = client.get_run(opt["mlflow_run_id"]).data.metrics
    assert parent["ranker_kept"] == float(ranker["kept"])
    # The length prior, tried for the winner on the search split, is taken only where it scored higher.
    length, params = opt["length_prior"], opt["best"]["params"]
    assert parent["length_prior_changed"] == float(length["kept"])
    assert params["length_prior"] == length["length_prior"]
    if params["mode"] == "hybrid":
        assert set(length["scores"]) == {"0", "0.5"}
        assert length["kept"] == (length["scores"]["0.5"] > length["scores"]["0"])
    else:
        assert not length["kept"] and length["scores"] == {}
    if ranker["kept"]:
        assert ranker["cv_ranker_ndcg@10"] > ranker["cv_fused_ndcg@10"]
        best = opt["best"]["params"]
        assert best["reranker"] == ranker["name"] and best["rerank_depth"] == ranker["depth"]

    # No OpenAI-compatible generator here: the listwise stage says so and scores nothing.
    assert opt["listwise"]["kept"] is False and "RAGLINE_GENERATOR=openai" in opt["listwise"]["reason"]

    # A second search must beat the champion on the held-out split to replace it. Users' ratings
    # (a feedback export) train its ranker too; the champion's own ranker is relearned, not reused.
    feedback = write_feedback_export(beir_dir, beir_dir.parent / "feedback")
    again = cli(
        "optimize", "-c", COLLECTION, "--dataset", str(beir_dir), "--trials", "2", "--no-chunking",
        "--feedback", str(feedback),
    )  # fmt: skip
    rated = again["ranker"]
    assert 1 <= rated["feedback_queries"] <= len((feedback / "queries.jsonl").read_text().splitlines())
    metrics2 = client.get_run(again["mlflow_run_id"]).data.metrics
    assert metrics2["ranker_feedback_queries"] == rated["feedback_queries"]
    beaten = again["best"]["metrics"]["holdout"]["ndcg@10"] > again["incumbent"]["holdout"]["ndcg@10"]
    assert again["promoted"] is beaten and "champion v1" in again["reason"]
    assert again["champion"]["version"] == ("2" if beaten else "1")

    # Evaluation uses what serving uses: the champion's config; answers are scored offline.
    champion_mode = again["champion"]["params"]["mode"]
    scored = cli("evaluate", "-c", COLLECTION, "--dataset", str(beir_dir), "--answers", "--max-answers", "3")
    assert scored["metrics"]["answers"] == 3
    assert {"groundedness", "answer_relevance", "refusal_accuracy", "citation_rate"} <= set(scored["metrics"])
    run2 = httpx.get(f"{mlflow_server}/api/2.0/mlflow/runs/get", params={"run_id": scored["mlflow_run_id"]})
    params2 = {p["key"]: p["value"] for p in run2.json()["run"]["data"]["params"]}
    assert params2["retrieval_mode"] == champion_mode and params2["generator"] == "local"
    # Answers are refused below the stored threshold (the first evaluation's, or the champion's).
    assert scored["refusal_threshold"] == params2["refusal_threshold"] in ("stored", "none")
    assert ev["refusal_learned"] is None or scored["refusal_threshold"] == "stored"


def test_a_batching_engine_answers_ahead_with_the_same_answers(
    beir_dir: Path, ray_session: None, settings: Settings
) -> None:
    """On the collection the test above built. The default engine (OpenVINO) batches concurrent
    requests, so the evaluation has it answer four questions at once while it checks and scores
    them in order: each question gets its own answer, the one made alone but for bf16 rounding
    (greedy; a batch sums in another order, and a long answer can take another word)."""
    from flows.evaluate import load_evalset, make_evaluator, shared_generator
    from pipelines.generation import OpenVINOGenerator
    from pipelines.generation.budget import SentenceBudget

    evalset, _ = load_evalset(str(beir_dir), COLLECTION)
    generator = shared_generator()
    engine = generator.generator if isinstance(generator, SentenceBudget) else generator
    assert isinstance(engine, OpenVINOGenerator)
    alone = make_evaluator(settings, COLLECTION, generate=True, max_answers=6, concurrency=1)
    engine.most_batched = 0
    one_by_one = alone.run(evalset)
    assert engine.most_batched == 1 and one_by_one.params["answer_concurrency"] == 1
    together = make_evaluator(settings, COLLECTION, generate=True, max_answers=6)
    ahead = together.run(evalset)
    assert ahead.params["answer_concurrency"] == 4 and engine.most_batched >= 2
    answered = ahead.per_query.filter(ahead.per_query["answer"].is_not_null())
    assert answered.height == 6 and (~answered["refused_without_model"]).sum() >= 2
    assert ahead.per_query["query_id"].to_list() == one_by_one.per_query["query_id"].to_list()
    alone_raw = one_by_one.per_query["raw_answer"].to_list()
    ahead_raw = ahead.per_query["raw_answer"].to_list()
    same = [a == b for a, b in zip(alone_raw, ahead_raw, strict=True) if a is not None]
    assert sum(same) >= len(same) / 2  # 39 of 43 on the sample set
    for i, text in enumerate(ahead_raw):  # none is another question's answer
        assert text is None or text == alone_raw[i] or text not in alone_raw[:i] + alone_raw[i + 1 :]
