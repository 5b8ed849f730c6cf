"""The library by stage keeps the import paths of the flat layout working for users' scripts."""

import importlib

import pytest

import pipelines


@pytest.mark.parametrize(("old", "new"), sorted(pipelines.MOVED.items()))
def test_an_old_module_path_is_the_module_at_its_new_path(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"pipelines.{old} moved to {new}"):
        moved = importlib.import_module(f"pipelines.{old}")
    assert moved is importlib.import_module(new)


def test_the_public_names_of_the_old_modules_import_from_their_stage() -> None:
    from pipelines.evaluation import EvalSet, Evaluator
    from pipelines.generation import GenerationError, make_generator
    from pipelines.index import Embedder, embed_collection
    from pipelines.ingest import read_sources, write_chunks
    from pipelines.optimization import SearchSpace, search
    from pipelines.retrieval import RetrievalConfig, Retriever

    assert Retriever.__module__ == "pipelines.retrieval.retriever"
    assert RetrievalConfig.__module__ == "pipelines.retrieval.query"
    assert make_generator.__module__ == "pipelines.generation.backends"
    assert issubclass(GenerationError, RuntimeError)
    assert Embedder.__module__ == embed_collection.__module__ == "pipelines.index.embedding"
    assert read_sources.__module__ == "pipelines.ingest.sources"
    assert write_chunks.__module__ == "pipelines.ingest.tables"
    assert Evaluator.__module__ == "pipelines.evaluation.evaluator"
    assert EvalSet.__module__ == "pipelines.evaluation.evalsets"
    assert search.__module__ == SearchSpace.__module__ == "pipelines.optimization.search"


def test_an_unknown_module_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pipelines.no_such_module")
