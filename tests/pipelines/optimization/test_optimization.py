"""The search space and the choice of the best trial (the search itself runs in the flow tests)."""

from __future__ import annotations

import optuna
import pytest

from pipelines.optimization.search import Candidate, SearchSpace, Trial, best
from pipelines.optimization.variants import Chunking, variant_name
from pipelines.retrieval import RetrievalConfig


def test_a_candidate_round_trips_through_trial_params() -> None:
    space = SearchSpace(top_k=(3, 8), ann=True)
    start = Candidate(
        Chunking(200, 32), RetrievalConfig(mode="hybrid", rrf_k=60, vector_weight=2.0, text_weight=1.0)
    )
    params = space.trial_params(start)
    trial = optuna.trial.FixedTrial({**params, "nprobes": 20, "refine_factor": 5})
    again = space.suggest(trial, RetrievalConfig())
    assert again.chunking == start.chunking
    assert (again.retrieval.mode, again.retrieval.rrf_k, again.retrieval.vector_weight) == ("hybrid", 60, 2.0)
    assert (again.retrieval.nprobes, again.retrieval.refine_factor) == (20, 5)
    assert Candidate.from_dict(again.to_dict()) == again


def test_text_mode_takes_no_fusion_or_ann_parameters() -> None:
    trial = optuna.trial.FixedTrial({"chunking": "120/16", "mode": "text"})
    c = SearchSpace(ann=True).suggest(trial, RetrievalConfig(rrf_k=42))
    assert c.retrieval.mode == "text" and c.retrieval.rrf_k == 42 and c.retrieval.nprobes is None


def test_the_best_trial_is_the_best_within_the_latency_budget() -> None:
    c = Candidate(Chunking(200, 32), RetrievalConfig())
    trials = [
        Trial(0, c, 0.90, 900.0, "r0", {"feasible": 0.0}),  # best score, over budget
        Trial(1, c, 0.80, 40.0, "r1", {"feasible": 1.0}),
        Trial(2, c, 0.80, 20.0, "r2", {"feasible": 1.0}),  # same score, faster
    ]
    assert best(trials).number == 2
    with pytest.raises(RuntimeError, match="latency budget"):
        best(trials[:1])


def test_variant_names_and_chunking_labels() -> None:
    assert variant_name("handbook", Chunking(120, 16)) == "handbook-c120o16"
    assert Chunking.parse("320/48") == Chunking(320, 48)
    with pytest.raises(ValueError, match="overlap"):
        Chunking(100, 100)


def test_a_config_the_search_has_seen_is_scored_once(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One chunking and one mode: every trial proposes the same config, scored by one evaluation."""
    import polars as pl

    from pipelines.evaluation import tracking
    from pipelines.evaluation.evalsets import EvalSet
    from pipelines.evaluation.evaluator import EvalReport
    from pipelines.optimization.search import search

    calls: list[Candidate] = []

    def evaluate(candidate: Candidate, evalset: EvalSet) -> EvalReport:
        calls.append(candidate)
        params = {"index_table": "t", "index_version": 1}
        return EvalReport({"ndcg@10": 0.5, "retrieval_p95_ms": 1.0}, pl.DataFrame(), params, {})

    queries = pl.DataFrame({"_id": ["q1"], "text": ["a question"], "synthetic": False})
    space = SearchSpace(chunkings=(Chunking(200, 32),), modes=("text",))
    with tracking.run(settings, "search-cache", "optimize"):
        trials = search(
            settings, "search-cache", evaluate, EvalSet("s", tmp_path, queries, {}), trials=3, space=space
        )
    assert len(trials) == 3 and len(calls) == 1 and all(t.score == 0.5 for t in trials)
