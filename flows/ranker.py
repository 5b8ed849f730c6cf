"""The feature-ranker stage of `ragline optimize` (pipelines/optimization/ranker.py): after the
config search, a learning-to-rank model is fitted for the winning config on the search split and,
when it beats the fused ranking under cross-validation, the winner carries it (at the depth chosen)
into the held-out comparison."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import mlflow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.evaluate import make_evaluator
from pipelines.evaluation.evalsets import EvalSet
from pipelines.optimization.ranker import judge, train_ranker
from pipelines.optimization.search import Candidate, TunedReranker
from pipelines.settings import get_settings


@task(name="train-feature-ranker", cache_policy=NO_CACHE)
def train_feature_ranker(
    collection: str, target: str, candidate: Candidate, search_set: EvalSet, parent_run_id: str
) -> tuple[Candidate | None, dict[str, Any]]:
    """CANDIDATE with a feature ranker learned on SEARCH_SET (TARGET: the collection its chunking
    is indexed in), or None when the ranker does not beat the fused ranking; with its summary."""
    settings = get_settings()
    log = get_run_logger()
    plain = replace(candidate.retrieval, rerank_depth=0)
    evaluator = make_evaluator(settings, target, plain, candidate.chunking, embedder=candidate.embedder)
    judged = judge(evaluator.retriever, evaluator.embedder, search_set, vectors=plain.mode != "text")
    result = train_ranker(judged, search_set.qrels)
    summary = result.summary()
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metrics(
            {
                "ranker_cv_fused_ndcg_at_10": summary["cv_fused_ndcg@10"],
                "ranker_cv_ndcg_at_10": summary["cv_ranker_ndcg@10"],
                "ranker_kept": float(summary["kept"]),
            }
        )
        if result.ranker is None:
            log.info("feature ranker not kept: %s", result.reason)
            return None, summary
        name = f"{collection}-ranker-{parent_run_id[:8]}"
        dest = result.ranker.save(settings.root / "rerankers" / collection / name)
        mlflow.log_artifacts(str(dest), artifact_path="ranker")
        mlflow.log_params({"ranker_depth": result.depth, "ranker_strength": result.strength})
    log.info("feature ranker kept: %s", result.reason)
    tuned = TunedReranker(str(dest.resolve()), name, f"runs:/{parent_run_id}/ranker", kind="features")
    ranked = replace(candidate.retrieval, rerank_depth=result.depth)
    return replace(candidate, retrieval=ranked, reranker=tuned), {**summary, "name": name}
