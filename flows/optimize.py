"""Optimize: evaluate the incumbent → search configs (Optuna, nested MLflow runs) on the search
split → try the length prior on the winner (retrieval/fusion.py) → learn a feature ranker for the
winner (each kept if it helps) → score the winner and the incumbent on the held-out split →
promote the winner to the collection's `champion` (MLflow registry alias + the serving registry)
only if it is better there."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import mlflow
import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from data_contracts import check_index_rows, chunks_suite, validate
from flows.evaluate import (
    artifact_key,
    base_chunking,
    load_evalset,
    make_evaluator,
    publish,
    summary,
)
from flows.ranker import train_feature_ranker, try_listwise_reranker, without_feature_ranker
from pipelines.evaluation import tracking
from pipelines.evaluation.evalsets import EvalSet
from pipelines.evaluation.evaluator import EvalReport
from pipelines.index.embedding import embed_collection, embed_options
from pipelines.index.indexes import ANN_MIN_ROWS
from pipelines.ingest.tables import quarantine_frame, write_quarantine
from pipelines.optimization import prior
from pipelines.optimization.search import Candidate, SearchSpace, Trial, best, search
from pipelines.optimization.variants import Chunking, chunk_variant, variant_name, write_variant_chunks
from pipelines.retrieval import RetrievalConfig
from pipelines.runtime import ensure_ray
from pipelines.settings import Settings, get_settings, validate_collection
from pipelines.store import Store


@task(name="build-chunking-variant", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def build_variant(collection: str, chunking: Chunking) -> str:
    """The collection whose index has CHUNKING: the parent itself, or a variant built (once) from
    the parent's documents, through the same chunk and index-row contracts as ingestion."""
    settings = get_settings()
    if chunking == base_chunking(settings):
        return collection
    store = Store.from_settings(settings)
    name = variant_name(collection, chunking)
    chunks = chunk_variant(store, collection, chunking, settings.embedding_model, settings.min_chunk_tokens)
    doc_ids = chunks["doc_id"].unique().to_list()
    checked = validate(chunks, chunks_suite(settings.min_chunk_tokens, chunking.tokens, doc_ids))
    write_variant_chunks(store, collection, name, checked.valid)
    if checked.rejected.height:
        write_quarantine(
            store, name, quarantine_frame(checked.rejected, "chunks", str(flow_run.id or "local"))
        )
    ensure_ray(settings)
    result = embed_collection(
        store,
        name,
        **embed_options(settings),
        check=check_index_rows,
    )
    get_run_logger().info(
        "variant %s (%s): %d chunks embedded, %d already there",
        name,
        chunking.label,
        result.embedded,
        result.skipped,
    )
    return name


def evaluate_candidate(
    settings: Settings,
    collection: str,
    candidate: Candidate,
    evalset: EvalSet,
    generate: bool,
    max_answers: int | None,
) -> EvalReport:
    target = build_variant(collection, candidate.chunking)
    evaluator = make_evaluator(
        settings,
        target,
        candidate.retrieval,
        candidate.chunking,
        generate=generate,
        max_answers=max_answers,
        embedder=candidate.embedder,
        reranker=candidate.reranker,
    )
    return evaluator.run(evalset)


def incumbent(settings: Settings, collection: str) -> tuple[Candidate, dict[str, Any] | None]:
    """The config to beat: the registered champion, else the settings' defaults."""
    champ = tracking.current_champion(settings, collection)
    if champ and champ["config"]:
        return Candidate.from_dict(champ["config"]), champ
    return Candidate(base_chunking(settings), RetrievalConfig.from_settings(settings)), None


@task(name="search-configs", cache_policy=NO_CACHE)
def search_configs(
    collection: str,
    search_set: EvalSet,
    trials: int,
    metric: str,
    budget_ms: float,
    space: SearchSpace,
    generate: bool,
    max_answers: int | None,
    parent_run_id: str,
    start: Candidate,
) -> list[Trial]:
    settings = get_settings()
    log = get_run_logger()

    def on_trial(t: Trial) -> None:
        log.info(
            "trial %d/%d: %s=%.4f p95=%.1f ms %s",
            t.number + 1,
            trials,
            metric,
            t.score,
            t.p95_ms,
            t.candidate.params(),
        )

    with mlflow.start_run(run_id=parent_run_id):
        return search(
            settings,
            collection,
            lambda c, s: evaluate_candidate(settings, collection, c, s, generate, max_answers),
            search_set,
            trials=trials,
            metric=metric,
            budget_ms=budget_ms,
            space=space,
            base=RetrievalConfig.from_settings(settings),
            start=start,
            on_trial=on_trial,
        )


@task(name="try-length-prior", cache_policy=NO_CACHE)
def try_length_prior(
    collection: str, candidate: Candidate, search_set: EvalSet, metric: str, parent_run_id: str
) -> tuple[Candidate, dict[str, Any]]:
    """CANDIDATE with the length prior (pipelines/optimization/prior.py) when it scores higher on
    SEARCH_SET, else CANDIDATE."""
    settings = get_settings()

    def score(config: RetrievalConfig) -> float:
        trial = replace(candidate, retrieval=config)
        report = evaluate_candidate(settings, collection, trial, search_set, False, None)
        return float(report.metrics.get(metric, 0.0))

    choice = prior.choose(candidate.retrieval, score, metric)
    get_run_logger().info("length prior %s: %s", "changed" if choice.kept else "kept", choice.reason)
    with mlflow.start_run(run_id=parent_run_id):
        chosen = choice.retrieval.length_prior
        mlflow.log_metrics({"length_prior_changed": float(choice.kept), "length_prior": chosen})
    return replace(candidate, retrieval=choice.retrieval), choice.summary()


@task(name="score-on-holdout", cache_policy=NO_CACHE)
def score_holdout(
    collection: str,
    candidate: Candidate,
    holdout: EvalSet,
    label: str,
    generate: bool,
    max_answers: int | None,
    parent_run_id: str,
) -> tuple[EvalReport, str]:
    settings = get_settings()
    report = evaluate_candidate(settings, collection, candidate, holdout, generate, max_answers)
    with (
        mlflow.start_run(run_id=parent_run_id),
        tracking.run(settings, collection, f"holdout-{label}", nested=True) as run,
    ):
        tracking.log_report(report, holdout)
        mlflow.log_param("chunking", candidate.chunking.label)
    return report, run.info.run_id


@task(name="promote-champion", cache_policy=NO_CACHE)
def promote(
    collection: str,
    winner: Candidate,
    scores: dict[str, float],
    metric: str,
    parent_run_id: str,
    min_similarity: float | None = None,
) -> dict[str, str]:
    """Register the winner in MLflow (alias `champion`) and point serving at it, with the refusal
    threshold calibrated for it (None: this evaluation set has no unanswerable question to learn from)."""
    settings = get_settings()
    target = build_variant(collection, winner.chunking)
    store = Store.from_settings(settings)
    with mlflow.start_run(run_id=parent_run_id):
        registered = tracking.register_champion(settings, collection, winner.to_dict(), scores, metric)
    if winner.embedder is not None:  # the fine-tuned model's own table
        index_table: str | None = winner.embedder.index_table
    else:
        index_table = store.active_index(target).name if target != collection else None
    store.set_champion(
        collection,
        {
            **registered,
            **winner.to_dict(),
            "index_table": index_table,
            "metric": metric,
            "score": scores[metric],
            "refusal": {"min_similarity": min_similarity},
        },
    )
    return registered


@flow(name="optimize", log_prints=True)
def optimize_flow(
    collection: str,
    dataset: str,
    trials: int = 20,
    metric: str = "ndcg@10",
    latency_budget_ms: float = 250.0,
    chunking: bool = True,
    generate: bool = False,
    max_answers: int | None = None,
    holdout_share: float = 0.4,
    finetune_budget_s: float | None = None,
    feedback: str | None = None,
    rerank: bool = True,
) -> dict[str, Any]:
    """Search COLLECTION's RAG configs on the search split of DATASET, check the best on the held-out
    split, and promote it to champion if it beats the current one there. With RERANK, the search
    winner first gets a feature ranker learned on the search split (and FEEDBACK, a feedback
    export) where it beats the fused ranking under cross-validation (flows/ranker.py). With
    FINETUNE_BUDGET_S, then fine-tune the embedder and train a cross-encoder for the champion's
    config (flows/finetune.py; FEEDBACK trains them too), kept only if they beat it on the held-out
    split."""
    settings = get_settings()
    validate_collection(collection)
    log = get_run_logger()
    evalset, checked = load_evalset(dataset, collection)
    search_set, holdout = evalset.split("search", holdout_share), evalset.split("holdout", holdout_share)
    if search_set.queries.is_empty() or holdout.queries.is_empty():
        raise ValueError(f"the evaluation set is too small to split ({evalset.queries.height} queries)")
    store = Store.from_settings(settings)
    base = base_chunking(settings)
    space = SearchSpace(
        chunkings=SearchSpace().chunkings if chunking else (base,),
        top_k=(3, 8) if generate else None,
        ann=store.active_index(collection).count_rows() >= ANN_MIN_ROWS,
    )
    current, champ = incumbent(settings, collection)
    missing = tuple(c for c in dict.fromkeys([base, current.chunking]) if c not in space.chunkings)
    if missing:
        space = SearchSpace(**{**space.__dict__, "chunkings": (*space.chunkings, *missing)})

    with tracking.run(settings, collection, "optimize", tags={"ragline.kind": "optimize"}) as parent:
        mlflow.log_params(
            {
                "metric": metric,
                "trials": trials,
                "latency_budget_ms": latency_budget_ms,
                "holdout_share": holdout_share,
                "search_queries": search_set.queries.height,
                "holdout_queries": holdout.queries.height,
                "eval_digest": evalset.digest,
                "space": str(space.to_dict())[:500],
            }
        )
        parent_id = parent.info.run_id
    done = search_configs(
        collection,
        search_set,
        trials,
        metric,
        latency_budget_ms,
        space,
        generate,
        max_answers,
        parent_id,
        without_feature_ranker(current),  # the first trial; its ranker (and prior) learned again
    )
    winner = best(done)
    finalist, length = try_length_prior(collection, winner.candidate, search_set, metric, parent_id)
    ranker, listwise = None, None
    if rerank and finalist.reranker is None:
        target = build_variant(collection, finalist.chunking)
        ranked, ranker = train_feature_ranker(collection, target, finalist, search_set, parent_id, feedback)
        # The generator as a listwise reranker, where a capable one is configured: it must beat
        # the feature ranker's cross-validated gain on the search split, within the latency budget.
        gain = ranker["cv_ranker_ndcg@10"] - ranker["cv_fused_ndcg@10"] if ranked else 0.0
        fused = winner.metrics.get("ndcg@10", 0.0)
        fused = length.get("search_score", fused) if metric == "ndcg@10" else fused
        args = (target, finalist, search_set, fused, gain, latency_budget_ms, parent_id)
        listed, listwise = try_listwise_reranker(*args)
        finalist = listed or ranked or finalist
    best_report, best_run = score_holdout(
        collection, finalist, holdout, "best", generate, max_answers, parent_id
    )
    inc_report, _ = score_holdout(collection, current, holdout, "incumbent", generate, max_answers, parent_id)
    new, old = best_report.metrics.get(metric, 0.0), inc_report.metrics.get(metric, 0.0)
    against = f"champion v{champ['version']}" if champ else "the defaults"
    reason = f"held-out {metric}: search winner {new:.4f} vs {against} {old:.4f}"
    champion: dict[str, str] | None = champ and {"name": champ["name"], "version": champ["version"]}
    promoted = new > old or champ is None
    if promoted:
        # With no champion yet, the better of the winner and the defaults becomes the first one.
        chosen, chosen_report = (finalist, best_report) if new >= old else (current, inc_report)
        # The refusal threshold is learned on the search split (its unanswerable questions), like
        # the config; the held-out split only scores.
        calibration = evaluate_candidate(settings, collection, chosen, search_set, False, None)
        refusal = calibration.metrics.get("refusal_min_similarity")
        champion = promote(collection, chosen, chosen_report.metrics, metric, parent_id, refusal)
        if chosen is current:
            reason += "; the defaults held up better and became the first champion"
        log.info("promoted %s v%s: %s", champion["name"], champion["version"], reason)
    else:
        chosen = current
        log.info("kept the current champion: %s", reason)
    with mlflow.start_run(run_id=parent_id):
        mlflow.log_metrics(
            {
                f"search_{tracking.metric_key(metric)}": winner.score,
                f"holdout_{tracking.metric_key(metric)}": new,
                f"incumbent_holdout_{tracking.metric_key(metric)}": old,
                "promoted": float(promoted),
            }
        )
        mlflow.log_dict(finalist.to_dict(), "best_config.json")
        trials_frame = pl.DataFrame(
            [{"trial": t.number, "score": t.score, "p95_ms": t.p95_ms, **t.candidate.params()} for t in done]
        )
        mlflow.log_table(trials_frame.to_pandas(), artifact_file="trials.json")
    create_table_artifact(
        [
            {
                "trial": t.number,
                metric: round(t.score, 4),
                "p95_ms": round(t.p95_ms, 1),
                **t.candidate.params(),
            }
            for t in done
        ],
        key=artifact_key(collection, "optimize-trials"),
        description=f"Optuna trials on the search split; promoted: {promoted} ({reason})",
    )
    url = publish(
        collection,
        best_report,
        best_run,
        parent.info.experiment_id,
        f"Best config of `{collection}` (held out)",
    )
    tuned = None
    if finetune_budget_s:
        from flows.finetune import finetune_flow  # it builds on this flow's tasks

        result = finetune_flow(
            collection, dataset, finetune_budget_s, metric, holdout_share, feedback=feedback, reranker=True
        )
        tuned = result
        if result["promoted"]:
            champion, promoted = result["champion"], True
    return {
        "collection": collection,
        "dataset": str(dataset),
        "trials": len(done),
        "best": {
            "params": finalist.params(),
            "metrics": {"search": {metric: round(winner.score, 4)}, "holdout": summary(best_report)},
        },
        "incumbent": {"params": current.params(), "holdout": {metric: round(old, 4)}},
        "champion": {**champion, "params": chosen.params()} if champion else None,
        "promoted": promoted,
        "reason": reason,
        "length_prior": length,
        "ranker": ranker,
        "listwise": listwise,
        "finetune": tuned,
        "rejected": {k: v for k, v in checked.items() if k.startswith("rejected_") and k != "rejected_rows"},
        "mlflow_run_id": parent_id,
        "mlflow_url": url,
        "flow_run_id": str(flow_run.id or "local"),
    }
