"""MLflow helpers: one experiment per collection, an evaluation as a run (params, metrics, the
evaluation set as an MLflow dataset, artifacts), and the collection's champion in the model registry.

The registered model is named after the collection; each version's artifact is the champion's RAG
config (`champion/config.json`), its alias `champion` marks the one serving follows.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.evaluation.evalsets import EvalSet
from pipelines.evaluation.evaluator import EvalReport
from pipelines.settings import Settings

CHAMPION = "champion"


def metric_key(name: str) -> str:
    """MLflow metric names cannot hold '@': ndcg@10 → ndcg_at_10."""
    return name.replace("@", "_at_")


def experiment_name(collection: str) -> str:
    return f"ragline-{collection}"


def experiment_id(settings: Settings, collection: str) -> str:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_uri)
    name = experiment_name(collection)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    # Embedded store: artifacts under the data dir, not ./mlruns of whatever the working dir is.
    location = None if settings.mlflow_tracking_uri else (settings.mlflow_artifacts / collection).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location, tags={"collection": collection}))


def run_url(settings: Settings, exp_id: str, run_id: str) -> str:
    return f"{settings.mlflow_ui_url.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"


@contextmanager
def run(
    settings: Settings, collection: str, name: str, nested: bool = False, tags: dict[str, str] | None = None
) -> Iterator[Any]:
    import mlflow

    exp = experiment_id(settings, collection)
    with mlflow.start_run(experiment_id=exp, run_name=name, nested=nested, tags=tags) as active:
        yield active


def log_report(report: EvalReport, evalset: EvalSet, artifacts: bool = True) -> None:
    """Log an evaluation into the active run."""
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in report.params.items()})
    mlflow.log_metrics({metric_key(k): float(v) for k, v in report.metrics.items()})
    queries = evalset.queries.with_columns(
        pl.col("_id")
        .map_elements(lambda q: json.dumps(evalset.qrels.get(q, {})), return_dtype=pl.String)
        .alias("qrels")
    )
    with warnings.catch_warnings():  # MLflow registers the local-file source twice and warns about it
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            queries.to_pandas(), source=str(evalset.path.resolve()), name=evalset.name, digest=evalset.digest
        )
    mlflow.log_input(
        dataset,
        context="evaluation",
        tags={
            "lancedb_table": str(report.params["index_table"]),
            "lancedb_version": str(report.params["index_version"]),
        },
    )
    mlflow.set_tags(
        {"eval_digest": evalset.digest, "lancedb_table_version": str(report.params["index_version"])}
    )
    if not artifacts:
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        report.per_query.write_parquet(out / "per_query.parquet")
        report.failures.write_csv(out / "failures.csv")
        (out / "metrics.json").write_text(json.dumps(report.metrics, indent=2))
        plot_metrics_by_k(report, out / "metrics_by_k.png")
        mlflow.log_artifacts(str(out))
    if report.failures.height:
        mlflow.log_table(report.failures.to_pandas(), artifact_file="failures_table.json")


def plot_metrics_by_k(report: EvalReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, by_k in sorted(report.metrics_by_k().items()):
        ks = sorted(by_k)
        ax.plot(ks, [by_k[k] for k in ks], marker="o", label=name)
    ax.set_xlabel("k (documents)")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{report.params['collection']}: {report.params.get('retrieval_mode')} retrieval")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --- the champion in the model registry ---------------------------------------------------------
def current_champion(settings: Settings, collection: str) -> dict[str, Any] | None:
    """{"name", "version", "run_id", "config": {...}} of the alias `champion`, or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(settings.mlflow_uri)
    try:
        mv = client.get_model_version_by_alias(collection, CHAMPION)
    except MlflowException:
        return None
    return {
        "name": collection,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "config": json.loads(mv.tags.get("config", "{}")),
        "score": float(mv.tags["score"]) if "score" in mv.tags else None,
        "metric": mv.tags.get("metric"),
    }


def register_champion(
    settings: Settings, collection: str, config: dict[str, Any], scores: dict[str, float], metric: str
) -> dict[str, str]:
    """Log CONFIG as the active run's `champion/config.json`, register it as a new version of the
    collection's model and point the `champion` alias at it."""
    import mlflow

    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("register_champion needs an active MLflow run")
    mlflow.log_dict(config, "champion/config.json")
    client = mlflow.MlflowClient(settings.mlflow_uri)
    if not client.search_registered_models(filter_string=f"name = '{collection}'"):
        client.create_registered_model(
            collection, tags={"ragline": "rag-config"}, description=f"RAG configs for collection {collection}"
        )
    mv = client.create_model_version(
        collection,
        source=f"{active.info.artifact_uri}/champion",
        run_id=active.info.run_id,
        tags={
            "config": json.dumps(config),
            "metric": metric,
            "score": str(scores[metric]),
            **{metric_key(k): str(round(v, 6)) for k, v in scores.items()},
        },
        description=f"{metric} {scores[metric]:.4f} on the held-out split",
    )
    client.set_registered_model_alias(collection, CHAMPION, mv.version)
    return {"name": collection, "version": str(mv.version)}
