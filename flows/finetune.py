"""Fine-tune: the collection's training pairs → the embedder fine-tuned on them (a Ray Train job,
time-budgeted) → an index table of its own → scored against the incumbent on the search split,
then on the held-out split → registered in MLflow (`<collection>-embedder`) with its lineage, and
made part of the champion only if it beats the incumbent on the held-out split."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from data_contracts import check_index_rows
from flows.evaluate import artifact_key, load_evalset, shared_embedder, summary
from flows.optimize import build_variant, evaluate_candidate, incumbent, promote
from flows.ranker import train_feature_ranker, without_feature_ranker
from pipelines.evaluation import tracking
from pipelines.evaluation.evalsets import EvalSet
from pipelines.index.embedding import embed_collection, embed_options
from pipelines.models import tuned_embedder_path
from pipelines.optimization.finetune import (
    EmbedderTrainer,
    FinetuneConfig,
    FinetuneResult,
    RerankerTrainer,
    register_embedder,
)
from pipelines.optimization.pairs import TrainingPairs, build_pairs
from pipelines.optimization.search import Candidate, TunedEmbedder, TunedReranker
from pipelines.runtime import ensure_ray
from pipelines.settings import get_settings, validate_collection
from pipelines.store import Store


def read_ratings(feedback: str | Path | None) -> list[dict[str, Any]]:
    """The rated answers of a feedback export (`ragline feedback export`): its ratings.jsonl."""
    if feedback is None:
        return []
    path = Path(feedback) / "ratings.jsonl"
    if not path.is_file():
        raise ValueError(f"{feedback} is not a feedback export (no ratings.jsonl)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@task(name="build-training-pairs", cache_policy=NO_CACHE)
def training_pairs(
    target: str,
    base: Candidate,
    base_table: str,
    search_set: EvalSet,
    rated: list[dict[str, Any]],
    synthetic: int,
) -> TrainingPairs:
    """Pairs from the search split, the feedback and the corpus, hard negatives from BASE_TABLE, the
    index the incumbent searches."""
    settings = get_settings()
    store = Store.from_settings(settings)
    chunks = pl.from_arrow(
        store.chunks(target).to_arrow().select(["id", "doc_id", "title", "text", "chunk_index"])
    )
    table = store.index_table_named(target, base_table)
    rows = pl.from_arrow(table.to_arrow().select(["doc_id", "text", "vector"]))
    assert isinstance(chunks, pl.DataFrame) and isinstance(rows, pl.DataFrame)
    spec = None if base.embedder is None else asdict(base.embedder)
    encoder = shared_embedder(tuned_embedder_path(spec, settings.embedding_model, settings.model_cache))
    pairs = build_pairs(chunks, encoder, rows, search_set=search_set, rated=rated, synthetic=synthetic)
    get_run_logger().info("training pairs: %s", pairs.counts())
    return pairs


@task(name="train-embedder", cache_policy=NO_CACHE)
def train_embedder(
    collection: str, base: Candidate, pairs: TrainingPairs, config: FinetuneConfig, run_id: str
) -> FinetuneResult:
    settings = get_settings()
    ensure_ray(settings)
    log = get_run_logger()
    progress = create_progress_artifact(
        0.0, key=artifact_key(collection, "finetune-progress"), description="training steps done / planned"
    )

    def on_progress(step: int, steps: int, loss: float) -> None:
        update_progress_artifact(progress, 100.0 * step / max(1, steps))
        log.info("fine-tuning: step %d / %d, loss %.4f", step, steps, loss)

    base_path = base.embedder.path if base.embedder else settings.embedding_model
    trainer = EmbedderTrainer(base_path, config, storage=settings.root / "ray-train")
    # its name is the model's name in the index table's name and in the answers' metadata
    dest = settings.root / "embedders" / collection / f"{collection}-embedder-{run_id[:8]}"
    lineage = {"collection": collection, "mlflow_run_id": run_id, "flow_run_id": str(flow_run.id or "local")}
    result = trainer.fit(pairs, dest, lineage, on_progress)
    update_progress_artifact(progress, 100.0)
    log.info(
        "fine-tuned %d / %d steps in %.0f s%s", result.steps, result.planned_steps, result.seconds,
        " (stopped by the time budget)" if result.stopped_by_budget else "",
    )  # fmt: skip
    return result


@task(name="train-reranker", cache_policy=NO_CACHE)
def train_reranker(
    collection: str, pairs: TrainingPairs, config: FinetuneConfig, run_id: str
) -> TunedReranker:
    """A cross-encoder trained from the packaged MiniLM weights (or the settings' model) on the same
    pairs, logged to the MLflow run as artifacts (`reranker/`)."""
    settings = get_settings()
    ensure_ray(settings)
    log = get_run_logger()
    trainer = RerankerTrainer(settings.embedding_model, config, storage=settings.root / "ray-train")
    name = f"{collection}-reranker-{run_id[:8]}"
    dest = settings.root / "rerankers" / collection / name

    def on_progress(step: int, steps: int, loss: float) -> None:
        log.info("reranker: step %d / %d, loss %.4f", step, steps, loss)

    result = trainer.fit(pairs, dest, {"collection": collection, "mlflow_run_id": run_id}, on_progress)
    log.info("reranker trained: %d / %d steps in %.0f s", result.steps, result.planned_steps, result.seconds)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifacts(str(dest), artifact_path="reranker")
        mlflow.log_metrics({"reranker_steps": float(result.steps), "reranker_seconds": result.seconds})
    return TunedReranker(str(dest), name, f"runs:/{run_id}/reranker")


@task(name="embed-with-tuned-model", cache_policy=NO_CACHE)
def embed_tuned(target: str, model_path: Path) -> str:
    """The target's chunks embedded by the tuned model into its own table; not made active."""
    settings = get_settings()
    ensure_ray(settings)
    result = embed_collection(
        Store.from_settings(settings),
        target,
        **embed_options(settings, model_path),
        check=check_index_rows,
        activate=False,
    )
    get_run_logger().info("embedded %d chunks with the tuned model into %s", result.embedded, result.table)
    return result.table


def update_tuned_index(collection: str, target: str) -> str | None:
    """When COLLECTION's champion brings a fine-tuned embedder whose table is TARGET's, embed
    TARGET's new chunks with it too: the table serving searches must not fall behind the chunks."""
    settings = get_settings()
    tuned = (Store.from_settings(settings).champion(collection) or {}).get("embedder")
    if not tuned or not tuned["index_table"].startswith(f"{target}__index_"):
        return None
    path = tuned_embedder_path(tuned, None, settings.model_cache)
    assert path is not None
    return embed_tuned(target, Path(path))


@flow(name="finetune", log_prints=True)
def finetune_flow(
    collection: str,
    dataset: str,
    time_budget_s: float = 600.0,
    metric: str = "ndcg@10",
    holdout_share: float = 0.4,
    feedback: str | None = None,
    synthetic: int = 2000,
    epochs: int = 1,
    batch_size: int = 32,
    reranker: bool = False,
    rerank_depths: tuple[int, ...] = (5, 10),
    latency_budget_ms: float = 250.0,
) -> dict[str, Any]:
    """Fine-tune COLLECTION's embedder on pairs from the search split of DATASET, its corpus and
    FEEDBACK (a feedback export), and with RERANKER train a cross-encoder on the same pairs (its
    own time budget) that reorders the first hits (each of RERANK_DEPTHS a candidate). The best of
    the tuned embedder, alone or with the reranker, on the search split (within the p95 latency
    budget) becomes part of the champion if it beats the incumbent on the held-out split."""
    settings = get_settings()
    validate_collection(collection)
    log = get_run_logger()
    evalset, _ = load_evalset(dataset, collection)
    search_set, holdout = evalset.split("search", holdout_share), evalset.split("holdout", holdout_share)
    if holdout.queries.is_empty():
        raise ValueError(f"the evaluation set is too small to split ({evalset.queries.height} queries)")
    current, champ = incumbent(settings, collection)
    target = build_variant(collection, current.chunking)
    rated = read_ratings(feedback)
    config = FinetuneConfig(epochs=epochs, batch_size=batch_size, time_budget_s=time_budget_s)
    store = Store.from_settings(settings)
    base_table = current.embedder.index_table if current.embedder else store.active_index(target).name

    with tracking.run(settings, collection, "finetune", tags={"ragline.kind": "finetune"}) as parent:
        parent_id = parent.info.run_id
        mlflow.log_params(
            {
                "metric": metric,
                "holdout_share": holdout_share,
                "eval_digest": evalset.digest,
                "base_embedder": current.embedder.name if current.embedder else "settings",
                "index_table": base_table,
                "feedback": str(feedback or ""),
                **{f"finetune_{k}": v for k, v in config.__dict__.items()},
            }
        )
    pairs = training_pairs(target, current, base_table, search_set, rated, synthetic)
    result = train_embedder(collection, current, pairs, config, parent_id)
    table = embed_tuned(target, result.model_path)
    info = Store.model_of(store.index_table_named(target, table))
    # A feature ranker learned on the incumbent's similarities does not carry over to a new embedder.
    tuned = replace(
        without_feature_ranker(current),
        embedder=TunedEmbedder(str(result.model_path), info.name, info.path_hash, table),
    )
    candidates = {"incumbent": current, "tuned": tuned}
    if tuned.reranker is None:  # one relearned for the tuned embedder, kept if it helps under CV
        featured, _ = train_feature_ranker(collection, target, tuned, search_set, parent_id, feedback)
        candidates |= {"tuned_features": featured} if featured else {}
    ranker = train_reranker(collection, pairs, config, parent_id) if reranker else None
    for depth in rerank_depths if ranker else ():
        deeper = replace(tuned.retrieval, rerank_depth=depth)
        candidates[f"tuned_rerank{depth}"] = replace(tuned, retrieval=deeper, reranker=ranker)

    scores: dict[str, dict[str, float]] = {}
    for split, evalset_ in (("search", search_set), ("holdout", holdout)):
        for label, candidate in candidates.items():
            report = evaluate_candidate(settings, collection, candidate, evalset_, False, None)
            with (
                mlflow.start_run(run_id=parent_id),
                tracking.run(settings, collection, f"finetune-{split}-{label}", nested=True),
            ):
                tracking.log_report(report, evalset_, artifacts=False)
            scores[f"{split}_{label}"] = summary(report)
    # The search split picks the challenger (within the latency budget); the held-out split judges it.
    fast = [
        label
        for label in candidates
        if label != "incumbent"
        and scores[f"search_{label}"].get("retrieval_p95_ms", 0.0) <= latency_budget_ms
    ]
    chosen = max(fast or ["tuned"], key=lambda label: scores[f"search_{label}"].get(metric, 0.0))
    new, old = scores[f"holdout_{chosen}"].get(metric, 0.0), scores["holdout_incumbent"].get(metric, 0.0)
    promoted = new > old
    with mlflow.start_run(run_id=parent_id):
        mlflow.log_metrics(
            {
                **{f"pairs_{k}": float(v) for k, v in result.pairs.items()},
                "train_steps": float(result.steps),
                "train_seconds": result.seconds,
                "stopped_by_budget": float(result.stopped_by_budget),
                **{f"{k}_{tracking.metric_key(metric)}": v.get(metric, 0.0) for k, v in scores.items()},
                "promoted": float(promoted),
            }
        )
        if result.loss is not None:
            mlflow.log_metric("train_loss", result.loss)
        registered = register_embedder(
            settings, collection, result, index_table=table, scores=scores["holdout_tuned"], promoted=promoted
        )
    winner = candidates[chosen]
    winner = replace(winner, embedder=replace(tuned.embedder, uri=registered["uri"]))  # type: ignore[arg-type]
    against = f"champion v{champ['version']}" if champ else "the defaults"
    reranked = winner.retrieval.rerank_depth if winner.reranker else 0
    kind = winner.reranker.kind if winner.reranker else ""
    what = f"tuned embedder + {kind} reranker (depth {reranked})" if reranked else "tuned embedder"
    reason = f"held-out {metric}: {what} {new:.4f} vs {against} {old:.4f}"
    champion = None
    if promoted:
        calibration = evaluate_candidate(settings, collection, winner, search_set, False, None)
        refusal = calibration.metrics.get("refusal_min_similarity")
        # scored on the held-out split, like every champion
        holdout_metrics = {k: float(v) for k, v in scores[f"holdout_{chosen}"].items()}
        champion = promote(collection, winner, holdout_metrics, metric, parent_id, refusal)
        log.info("promoted %s v%s: %s", champion["name"], champion["version"], reason)
    else:
        log.info("kept the incumbent: %s", reason)
    create_table_artifact(
        [
            {"scored on": k.replace("_", " "), **{m: v for m, v in s.items() if "@10" in m}}
            for k, s in scores.items()
        ],
        key=artifact_key(collection, "finetune"),
        description=f"fine-tuned embedder vs incumbent; promoted: {promoted} ({reason})",
    )
    return {
        "collection": collection,
        "dataset": str(dataset),
        "pairs": result.pairs,
        "training": {
            "steps": result.steps,
            "planned_steps": result.planned_steps,
            "seconds": result.seconds,
            "stopped_by_budget": result.stopped_by_budget,
            "loss": result.loss,
            "device": result.device,
        },
        "model": {"path": str(result.model_path), "table": table, **registered},
        "reranker": asdict(ranker) if ranker else None,
        "scores": scores,
        "chosen": chosen,
        "promoted": promoted,
        "reason": reason,
        "champion": champion,
        "mlflow_run_id": parent_id,
        "flow_run_id": str(flow_run.id or "local"),
    }
