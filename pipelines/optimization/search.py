"""The config search of `ragline optimize`: Optuna's TPE sampler over the RAG configs that matter,
each trial a nested MLflow run, under a p95 retrieval-latency budget.

The search only sees the `search` split of the evaluation set; the caller scores the winner (and the
current champion) on the held-out split it never saw, so a promotion is judged on generalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipelines.evaluation.evalsets import EvalSet
from pipelines.evaluation.evaluator import EvalReport
from pipelines.optimization.variants import Chunking
from pipelines.retrieval.query import MODES, RetrievalConfig
from pipelines.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TunedEmbedder:
    """A fine-tuned embedder (optimization/finetune.py) and the index table it built."""

    path: str  # its local folder
    name: str
    path_hash: str
    index_table: str
    uri: str = ""  # its MLflow model (models:/<collection>-embedder/<version>), once registered


@dataclass(frozen=True)
class TunedReranker:
    """A reranker trained by the loop (retrieval/rerank.py): a cross-encoder (`ragline finetune
    --reranker`) or a feature ranker (`ragline optimize`, kind "features")."""

    path: str  # its local folder
    name: str
    uri: str = ""  # its MLflow artifacts (runs:/<run>/reranker)
    kind: str = "cross-encoder"


@dataclass(frozen=True)
class Candidate:
    """One RAG config: how the corpus is chunked, how it is searched, and, when fine-tuned, the
    embedder its index was built with (None: the settings' model)."""

    chunking: Chunking
    retrieval: RetrievalConfig
    embedder: TunedEmbedder | None = None
    reranker: TunedReranker | None = None  # used at the retrieval config's rerank_depth

    def params(self) -> dict[str, Any]:
        tuned = {"embedder": self.embedder.name} if self.embedder else {}
        tuned |= {"reranker": self.reranker.name} if self.reranker else {}
        return {"chunking": self.chunking.label, **asdict(self.retrieval), **tuned}

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunking": asdict(self.chunking),
            "retrieval": asdict(self.retrieval),
            "embedder": asdict(self.embedder) if self.embedder else None,
            "reranker": asdict(self.reranker) if self.reranker else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        embedder, reranker = data.get("embedder"), data.get("reranker")
        return cls(
            Chunking(**data["chunking"]),
            RetrievalConfig(**data["retrieval"]),
            TunedEmbedder(**embedder) if embedder else None,
            TunedReranker(**reranker) if reranker else None,
        )


@dataclass(frozen=True)
class SearchSpace:
    chunkings: tuple[Chunking, ...] = (Chunking(120, 16), Chunking(200, 32), Chunking(320, 48))
    modes: tuple[str, ...] = MODES
    rrf_k: tuple[int, int] = (5, 120)
    vector_weight: tuple[float, float] = (0.25, 4.0)  # relative to the full-text ranking's weight 1
    top_k: tuple[int, int] | None = None  # only matters when answers are scored
    ann: bool = False  # nprobes / refine_factor, when the index has an ANN index

    def suggest(self, trial: Any, base: RetrievalConfig) -> Candidate:
        labels = [c.label for c in self.chunkings]
        chunking = Chunking.parse(trial.suggest_categorical("chunking", labels))
        mode = trial.suggest_categorical("mode", list(self.modes))
        params: dict[str, Any] = {"mode": mode}
        if mode == "hybrid":
            params["rrf_k"] = trial.suggest_int("rrf_k", *self.rrf_k, log=True)
            params["vector_weight"] = trial.suggest_float("vector_weight", *self.vector_weight, log=True)
            params["text_weight"] = 1.0
        if self.top_k:
            params["top_k"] = trial.suggest_int("top_k", *self.top_k)
        if self.ann and mode != "text":
            params["nprobes"] = trial.suggest_int("nprobes", 5, 60, log=True)
            params["refine_factor"] = trial.suggest_categorical("refine_factor", [1, 5, 10])
        return Candidate(chunking, RetrievalConfig(**{**asdict(base), **params}))

    def trial_params(self, candidate: Candidate) -> dict[str, Any]:
        """CANDIDATE as this space's trial parameters (to enqueue it as a trial of its own)."""
        r = candidate.retrieval
        params: dict[str, Any] = {"chunking": candidate.chunking.label, "mode": r.mode}
        if r.mode == "hybrid":
            params["rrf_k"] = min(max(r.rrf_k, self.rrf_k[0]), self.rrf_k[1])
            ratio = r.vector_weight / r.text_weight if r.text_weight else self.vector_weight[1]
            params["vector_weight"] = min(max(ratio, self.vector_weight[0]), self.vector_weight[1])
        if self.top_k:
            params["top_k"] = min(max(r.top_k, self.top_k[0]), self.top_k[1])
        return params

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunkings": [c.label for c in self.chunkings],
            "modes": list(self.modes),
            "rrf_k": list(self.rrf_k),
            "vector_weight": list(self.vector_weight),
            "top_k": list(self.top_k) if self.top_k else None,
            "ann": self.ann,
        }


@dataclass
class Trial:
    number: int
    candidate: Candidate
    score: float
    p95_ms: float
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    per_query: dict[str, float] = field(default_factory=dict)  # the metric of each judged question
    start: bool = False  # the incumbent, enqueued as the first trial

    @property
    def feasible(self) -> bool:
        return bool(self.metrics.get("feasible", 1.0))


Evaluate = Callable[[Candidate, EvalSet], EvalReport]


def search(
    settings: Settings,
    collection: str,
    evaluate: Evaluate,
    search_set: EvalSet,
    *,
    trials: int,
    metric: str = "ndcg@10",
    budget_ms: float = 250.0,
    space: SearchSpace | None = None,
    base: RetrievalConfig | None = None,
    seed: int = 0,
    start: Candidate | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Run TRIALS trials (inside the active MLflow run, each a nested run); returns them all.

    START (the incumbent) is the first trial, so the search never ends below where it began."""
    import mlflow
    import optuna

    from pipelines.evaluation import tracking

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = space or SearchSpace()
    base = base or RetrievalConfig()
    done: list[Trial] = []
    # TPE proposes a config it has seen again now and then: scored once, reused (marked cached).
    seen: dict[Candidate, EvalReport] = {}

    def objective(trial: Any) -> float:
        candidate = space.suggest(trial, base)
        with tracking.run(settings, collection, f"trial-{trial.number:03d}", nested=True) as run:
            cached = candidate in seen
            report = seen[candidate] if cached else evaluate(candidate, search_set)
            seen[candidate] = report
            tracking.log_report(report, search_set, artifacts=False)
            p95 = report.metrics.get("retrieval_p95_ms", 0.0)
            score = float(report.metrics.get(metric, 0.0))
            feasible = p95 <= budget_ms
            mlflow.log_params({"chunking": candidate.chunking.label, "trial": trial.number})
            mlflow.log_metrics({"objective": score, "feasible": float(feasible), "cached": float(cached)})
        trial.set_user_attr("p95_ms", p95)
        # A trial over the latency budget is infeasible: TPE learns to avoid that region.
        trial.set_constraint("p95_ms", p95 - budget_ms)
        metrics = {**report.metrics, "feasible": float(feasible)}
        per_query = _per_query(report, metric)
        first = start is not None and trial.number == 0
        result = Trial(trial.number, candidate, score, p95, run.info.run_id, metrics, per_query, first)
        done.append(result)
        if on_trial:
            on_trial(result)
        return score

    sampler = optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=min(8, max(2, trials // 3)),
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=f"{collection}-{metric}")
    if start is not None:
        study.enqueue_trial(space.trial_params(start))
    study.optimize(objective, n_trials=trials, gc_after_trial=False)
    return done


def best(trials: list[Trial]) -> Trial:
    """The best trial within the latency budget (ties: the faster one); the incumbent (the start
    trial) unless the best beats it by more than chance would among that many configs (`margin`)."""
    feasible = [t for t in trials if t.feasible]
    if not feasible:
        raise RuntimeError("no trial met the latency budget: raise --latency-budget-ms or shrink the index")
    top = max(feasible, key=lambda t: (t.score, -t.p95_ms))
    start = next((t for t in feasible if t.start), None)
    if start is None or top is start or not top.per_query:
        return top
    distinct = len({t.candidate for t in trials})
    return top if top.score - start.score > margin(top, start, distinct) else start


def margin(top: Trial, start: Trial, configs: int) -> float:
    """What TOP must beat START by: sqrt(2 ln n) standard errors of their per-question differences,
    n the configs tried. The best of n configs that are no better than the start still beats it by
    about that much on the search split, by chance alone (the expected maximum of n normal draws),
    and a winner by chance loses on questions it has not seen (benchmarks/optimize_halves.py)."""
    shared = sorted(set(top.per_query) & set(start.per_query))
    if len(shared) < 2 or configs < 2:
        return 0.0
    diffs = np.asarray([top.per_query[q] - start.per_query[q] for q in shared])
    return float(np.sqrt(2 * np.log(configs)) * diffs.std(ddof=1) / np.sqrt(len(diffs)))


def _per_query(report: EvalReport, metric: str) -> dict[str, float]:
    frame = report.per_query
    if metric not in frame.columns or "query_id" not in frame.columns:
        return {}
    rows = frame.select("query_id", metric).drop_nulls().iter_rows()
    return {str(q): float(v) for q, v in rows}
