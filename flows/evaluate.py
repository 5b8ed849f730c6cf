"""Evaluate: an evaluation set (BEIR layout) → the serving retriever (+ generator) → metrics →
an MLflow run with the dataset and artifacts, linked from the Prefect run."""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from data_contracts import check_evalset
from pipelines.evaluation import evalsets, tracking
from pipelines.evaluation.evalsets import EvalSet, Split
from pipelines.evaluation.evaluator import EvalOptions, EvalReport, Evaluator
from pipelines.generation import Generator, make_generator
from pipelines.generation.backends import listwise_llm
from pipelines.generation.budget import with_sentence_budget
from pipelines.index.embedding import Embedder
from pipelines.optimization.search import TunedEmbedder, TunedReranker
from pipelines.optimization.variants import Chunking
from pipelines.retrieval import RetrievalConfig, Retriever
from pipelines.retrieval.rerank import load_reranker
from pipelines.settings import Settings, get_settings, validate_collection
from pipelines.store import Store

HEADLINE = ("ndcg@10", "recall@10", "mrr@10", "precision@10", "hit_rate@1")


def artifact_key(collection: str, what: str) -> str:
    return f"{collection}-{what}".replace("_", "-")  # Prefect keys: lowercase, digits, dashes


@lru_cache(maxsize=2)
def shared_embedder(model_path: str | None) -> Embedder:
    """Loaded once per process: every trial of a search uses the same query encoder."""
    return Embedder(model_path, threads=None)


@lru_cache(maxsize=1)
def shared_generator() -> Generator | None:
    """As serving answers: stopped once the answer holds what the checker will keep."""
    settings = get_settings()
    return with_sentence_budget(make_generator(settings), settings.answer_sentence_limit)


def base_chunking(settings: Settings) -> Chunking:
    return Chunking(settings.chunk_tokens, settings.chunk_overlap)


@task(name="load-evaluation-set", cache_policy=NO_CACHE)
def load_evalset(dataset: str, collection: str) -> tuple[EvalSet, dict[str, Any]]:
    """Read the BEIR folder and hold it to the eval-set contract; rejected rows are reported."""
    queries, qrels, answers, corpus_ids = evalsets.read_raw(dataset)
    store = Store.from_settings(get_settings())
    doc_ids = store.documents(collection).to_arrow().column("id").to_pylist()
    check = check_evalset(queries, qrels, doc_ids)
    log = get_run_logger()
    for row in check.rejected.head(20).iter_rows(named=True):
        log.warning("evaluation set: %s row %r left out: %s", row["table"], row["row"], row["reason"])
    evalset = evalsets.build(dataset, check.queries, check.qrels, answers, corpus_ids)
    return evalset, {**check.counts, "rejected_rows": check.rejected.to_dicts()}


def make_evaluator(
    settings: Settings,
    collection: str,
    retrieval: RetrievalConfig | None = None,
    chunking: Chunking | None = None,
    *,
    mode: str | None = None,
    generate: bool = False,
    max_answers: int | None = None,
    embedder: TunedEmbedder | None = None,
    reranker: TunedReranker | None = None,
    concurrency: int = EvalOptions.concurrency,
) -> Evaluator:
    """An evaluator of COLLECTION as serving sees it (its champion, if any; MODE overrides the
    retrieval mode only), or of RETRIEVAL (with EMBEDDER's index table and model, and RERANKER at
    the config's rerank_depth, when given)."""
    store = Store.from_settings(settings)

    def llm() -> Generator | None:  # for a listwise reranker: the configured OpenAI-compatible server
        return listwise_llm(settings)

    if retrieval is None:
        override = {"mode": mode} if mode else {}
        base = RetrievalConfig.from_settings(settings)
        retriever = Retriever.champion(
            store, collection, base, reranker_cache=settings.model_cache, llm=llm, **override
        )
        champion = store.champion(collection) or {}
        chunking = Chunking(**champion["chunking"]) if champion.get("chunking") else chunking
    else:
        retriever = Retriever(store, collection, retrieval, table=embedder.index_table if embedder else None)
        retriever.embedder = asdict(embedder) if embedder else None
        spec = asdict(reranker) if reranker else None
        retriever.reranker = load_reranker(spec, settings.model_cache, llm=llm) if spec else None
    model = retriever.query_model(settings.embedding_model, settings.model_cache)
    chunk = chunking or base_chunking(settings)
    options = EvalOptions(
        generate=generate,
        max_answers=max_answers,
        context_tokens=settings.context_tokens,
        max_new_tokens=settings.max_new_tokens,
        answer_sentences=settings.answer_sentence_limit,
        # as serving does: RAGLINE_REFUSAL_MIN_SIMILARITY overrides the champion's threshold
        min_similarity=settings.refusal_min_similarity,
        concurrency=concurrency,
    )
    return Evaluator(
        retriever,
        shared_embedder(model),
        shared_generator() if generate else None,
        options,
        chunking={"tokens": chunk.tokens, "overlap": chunk.overlap},
    )


@task(name="run-evaluation", cache_policy=NO_CACHE)
def run_evaluation(evaluator: Evaluator, evalset: EvalSet) -> EvalReport:
    log = get_run_logger()

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            log.info("evaluated %d / %d queries", done, total)

    return evaluator.run(evalset, progress)


def summary(report: EvalReport) -> dict[str, float]:
    return {k: round(v, 4) for k, v in report.metrics.items()}


def publish(collection: str, report: EvalReport, run_id: str, exp_id: str, title: str) -> str:
    """The Prefect side of a run: a link to it in MLflow and the headline metrics."""
    url = tracking.run_url(get_settings(), exp_id, run_id)
    create_link_artifact(
        url, link_text=f"MLflow run {run_id[:8]}", key=artifact_key(collection, "evaluation-run")
    )
    rows = [f"| {k} | {report.metrics[k]:.4f} |" for k in HEADLINE if k in report.metrics]
    create_markdown_artifact(
        "\n".join(
            [
                f"# {title}",
                f"[MLflow run]({url}) · {report.dataset['queries']} queries · "
                f"mode `{report.params.get('retrieval_mode')}` · index `{report.params['index_table']}`",
                "",
                "| metric | value |",
                "|---|---|",
                *rows,
                "",
                f"{report.failures.height} failure(s) logged as `failures.csv`.",
            ]
        ),
        key=artifact_key(collection, "evaluation"),
    )
    return url


def remember_refusal(
    settings: Settings, collection: str, report: EvalReport, split: Split, mode: str | None
) -> float | None:
    """Serve with the refusal threshold this evaluation learned from its unanswerable questions,
    while the collection has no champion that brings one (`ragline optimize` learns its own on the
    search split). A held-out split only scores, and a mode override is not what serving runs."""
    threshold = report.metrics.get("refusal_min_similarity")
    store = Store.from_settings(settings)
    champion_has_one = ((store.champion(collection) or {}).get("refusal") or {}).get("min_similarity")
    if threshold is None or split == "holdout" or mode or champion_has_one is not None:
        return None
    store.set_refusal(collection, threshold)
    get_run_logger().info("serving refuses below similarity %.4f (learned from this evaluation)", threshold)
    return threshold


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    collection: str,
    dataset: str,
    mode: str | None = None,
    generate: bool = False,
    max_answers: int | None = None,
    split: Split = "all",
    concurrency: int = EvalOptions.concurrency,
) -> dict[str, Any]:
    """Score COLLECTION on the BEIR-layout evaluation set at DATASET with the retriever serving uses
    (its champion config, unless MODE overrides the retrieval mode); log an MLflow run. With
    answers, a batching engine makes CONCURRENCY of them at once."""
    settings = get_settings()
    validate_collection(collection)
    evalset, checked = load_evalset(dataset, collection)
    evalset = evalset.split(split)
    evaluator = make_evaluator(
        settings, collection, mode=mode, generate=generate, max_answers=max_answers, concurrency=concurrency
    )
    report = run_evaluation(evaluator, evalset)
    with tracking.run(settings, collection, f"evaluate-{report.params['retrieval_mode']}") as run:
        tracking.log_report(report, evalset)
        import mlflow

        mlflow.log_metrics(
            {"rejected_queries": checked["rejected_queries"], "rejected_qrels": checked["rejected_qrels"]}
        )
        if checked["rejected_rows"]:
            mlflow.log_dict({"rejected": checked["rejected_rows"]}, "rejected_rows.json")
    url = publish(
        collection, report, run.info.run_id, run.info.experiment_id, f"Evaluation of `{collection}`"
    )
    learned = remember_refusal(settings, collection, report, split, mode)
    return {
        "collection": collection,
        "dataset": str(dataset),
        "split": split,
        "queries": evalset.queries.height,
        "metrics": summary(report),
        "rejected": {k: v for k, v in checked.items() if k.startswith("rejected_") and k != "rejected_rows"},
        "failures": report.failures.height,
        "refusal_learned": learned,
        # with --answers: the threshold answers were refused below (stored | cross-fitted | none)
        "refusal_threshold": report.params.get("refusal_threshold"),
        "answer_concurrency": report.params.get("answer_concurrency"),  # generation_p50_ms is among as many
        "mlflow_run_id": run.info.run_id,
        "mlflow_experiment_id": run.info.experiment_id,
        "mlflow_url": url,
        "flow_run_id": str(flow_run.id or "local"),
    }
