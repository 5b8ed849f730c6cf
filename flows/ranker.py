"""The feature-ranker stage of `ragline optimize` (pipelines/optimization/ranker.py): after the
config search, a learning-to-rank model is fitted for the winning config on the search split and,
when it beats the fused ranking under cross-validation, the winner carries it (at the depth chosen)
into the held-out comparison. A feedback export's rated questions (`ragline feedback export`) train
it too; they are never scored, so the choice of depth and strength stays the search split's."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import mlflow
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.evaluate import load_evalset, make_evaluator
from pipelines.evaluation.evalsets import EvalSet
from pipelines.generation.backends import listwise_llm
from pipelines.optimization.ranker import judge, train_ranker
from pipelines.optimization.search import Candidate, TunedReranker
from pipelines.settings import get_settings


def without_feature_ranker(candidate: Candidate) -> Candidate:
    """CANDIDATE without its feature ranker: one learned on the search split flatters its search
    score (it has seen those questions), and one learned on another embedder's similarities does
    not carry over. Relearned by `train_feature_ranker` instead."""
    if candidate.reranker is None or candidate.reranker.kind != "features":
        return candidate
    return replace(candidate, reranker=None, retrieval=replace(candidate.retrieval, rerank_depth=0))


@task(name="train-feature-ranker", cache_policy=NO_CACHE)
def train_feature_ranker(
    collection: str,
    target: str,
    candidate: Candidate,
    search_set: EvalSet,
    parent_run_id: str,
    feedback: str | None = None,
) -> tuple[Candidate | None, dict[str, Any]]:
    """CANDIDATE with a feature ranker learned on SEARCH_SET and FEEDBACK's rated questions (TARGET:
    the collection its chunking is indexed in), or None when the ranker does not beat the fused
    ranking; with its summary."""
    settings = get_settings()
    log = get_run_logger()
    plain = replace(candidate.retrieval, rerank_depth=0)
    evaluator = make_evaluator(settings, target, plain, candidate.chunking, embedder=candidate.embedder)
    vectors = plain.mode != "text"
    judged = judge(evaluator.retriever, evaluator.embedder, search_set, vectors=vectors)
    rated = load_evalset(feedback, collection)[0] if feedback else None
    extra = judge(evaluator.retriever, evaluator.embedder, rated, vectors=vectors) if rated else []
    result = train_ranker(judged, search_set.qrels, extra=extra)
    summary = result.summary()
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metrics(
            {
                "ranker_cv_fused_ndcg_at_10": summary["cv_fused_ndcg@10"],
                "ranker_cv_ndcg_at_10": summary["cv_ranker_ndcg@10"],
                "ranker_kept": float(summary["kept"]),
                "ranker_feedback_queries": float(summary["feedback_queries"]),
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


LISTWISE_DEPTH = 10  # RankGPT's window: what one prompt of a capable model holds comfortably


@task(name="try-listwise-reranker", cache_policy=NO_CACHE)
def try_listwise_reranker(
    target: str,
    candidate: Candidate,
    search_set: EvalSet,
    fused_ndcg: float,
    to_beat: float,
    latency_budget_ms: float,
    parent_run_id: str,
) -> tuple[Candidate | None, dict[str, Any]]:
    """CANDIDATE with the generator as a listwise reranker, where an OpenAI-compatible one is
    configured and it beats the fused ranking (FUSED_NDCG, CANDIDATE's search-split nDCG@10) by
    more than TO_BEAT (the feature ranker's cross-validated gain) within the latency budget. The
    model is not trained on the search split, so its search score is a fair estimate."""
    settings = get_settings()
    llm = listwise_llm(settings)
    if llm is None:
        return None, {"kept": False, "reason": "no OpenAI-compatible generator (RAGLINE_GENERATOR=openai)"}
    tuned = TunedReranker("", f"listwise-{llm.name}", kind="llm")
    listwise = replace(
        candidate, reranker=tuned, retrieval=replace(candidate.retrieval, rerank_depth=LISTWISE_DEPTH)
    )
    evaluator = make_evaluator(
        settings, target, listwise.retrieval, listwise.chunking, embedder=listwise.embedder, reranker=tuned
    )
    metrics = evaluator.run(search_set).metrics
    ndcg, p95 = metrics.get("ndcg@10", 0.0), metrics.get("retrieval_p95_ms", 0.0)
    gain = ndcg - fused_ndcg
    kept = gain > max(to_beat, 0.0) and p95 <= latency_budget_ms
    reason = (
        f"search-split nDCG@10 {ndcg:.4f} vs {fused_ndcg:.4f} fused ({gain:+.4f}; to beat {to_beat:+.4f}), "
        f"p95 {p95:.0f} ms (budget {latency_budget_ms:.0f})"
    )
    get_run_logger().info("listwise reranker %s: %s", "kept" if kept else "not kept", reason)
    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_metrics(
            {"listwise_ndcg_at_10": ndcg, "listwise_p95_ms": p95, "listwise_kept": float(kept)}
        )
    summary = {"kept": kept, "model": llm.name, "depth": LISTWISE_DEPTH, "ndcg@10": round(ndcg, 4)}
    return (listwise if kept else None), {**summary, "p95_ms": round(p95, 1), "reason": reason}
