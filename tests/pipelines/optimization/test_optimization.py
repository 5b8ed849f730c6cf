"""The search space and the choice of the best trial (the search itself runs in the flow tests)."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest

from pipelines.optimization import prior
from pipelines.optimization.search import Candidate, SearchSpace, Trial, best, margin
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


def test_a_winner_by_chance_does_not_replace_the_incumbent() -> None:
    start = Candidate(Chunking(200, 32), RetrievalConfig())
    other = Candidate(Chunking(200, 32), RetrievalConfig(rrf_k=20))
    base = {f"q{i}": 0.5 for i in range(12)}
    feasible = {"feasible": 1.0}
    # +0.05 on average, from two questions up by 0.4 and one down by 0.2: noise among 20 configs
    noisy = base | {"q0": 0.9, "q1": 0.9, "q2": 0.3}
    trials = [Trial(0, start, 0.5, 10.0, "r0", feasible, base, start=True)]
    trials += [Trial(i, replace(other, retrieval=RetrievalConfig(rrf_k=20 + i)), 0.5, 10.0, f"r{i}",
                     feasible, base) for i in range(1, 19)]  # fmt: skip
    trials.append(Trial(19, other, 0.55, 10.0, "r19", feasible, noisy))
    assert margin(trials[-1], trials[0], 20) > 0.05 and best(trials).start
    # the same mean gain, every question up by 0.05: no chance explains that
    steady = {q: v + 0.05 for q, v in base.items()}
    trials[-1] = Trial(19, other, 0.55, 10.0, "r19", feasible, steady)
    assert best(trials).number == 19
    # without a start trial (nothing to hold on to), the best is the best
    assert best([replace(t, start=False) for t in trials[:-1]] + [trials[-1]]).number == 19


def test_the_length_prior_is_taken_only_where_it_scores_higher() -> None:
    base = RetrievalConfig(rrf_k=40)

    def score(config: RetrievalConfig) -> float:  # a collection of long and short documents
        return {0.0: 0.80, prior.LENGTH_PRIOR: 0.86}[config.length_prior]

    choice = prior.choose(base, score, "ndcg@10")
    assert choice.kept and choice.retrieval == replace(base, length_prior=prior.LENGTH_PRIOR)
    assert choice.summary()["search_score"] == 0.86 and choice.summary()["scores"] == {"0": 0.8, "0.5": 0.86}
    flat = prior.choose(base, lambda c: 0.8, "ndcg@10")  # nothing better: a tie keeps the base
    assert not flat.kept and flat.retrieval == base
    # a champion with the prior is tried without it
    back = prior.choose(choice.retrieval, lambda c: 0.9 if c.length_prior == 0 else 0.8, "ndcg@10")
    assert back.kept and back.retrieval == base
    text = prior.choose(replace(base, mode="text"), score, "ndcg@10")
    assert not text.kept and text.scores == {} and "fuses nothing" in text.reason


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
