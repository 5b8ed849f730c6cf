"""ragline's library, one subpackage per stage of the pipeline, in the order data flows:

    ingest/        sources -> parsed documents -> features -> chunks (+ quarantine)
    index/         chunks -> embeddings -> the collection's index table and its search indexes
    retrieval/     a query -> ranked passages (vector, full text, fused)
    generation/    passages + question -> a prompt -> an answer (one backend per engine)
    evaluation/    eval sets -> retrieval and answer metrics -> MLflow runs
    optimization/  a search space -> trials -> a registered champion

plus a small core that every stage may use: `settings`, `schemas`, `ids`, `store` (the LanceDB
tables and the collections registry), `models` (where model weights come from), `runtime` (the
process environment and Ray) and `sample` (the bundled corpus). A stage imports the core and
earlier stages, never a later one (tests/test_architecture.py); flows and serving build on it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

# Module paths of the flat layout before the stages (0.1), kept importable for users' scripts.
MOVED = {
    "sources": "pipelines.ingest.sources",
    "parsers": "pipelines.ingest.parsers",
    "features": "pipelines.ingest.features",
    "chunking": "pipelines.ingest.chunking",
    "embedding": "pipelines.index.embedding",
    "prompts": "pipelines.generation.prompts",
    "evalsets": "pipelines.evaluation.evalsets",
    "metrics": "pipelines.evaluation.metrics",
    "answer_metrics": "pipelines.evaluation.answer_metrics",
    "tracking": "pipelines.evaluation.tracking",
    "variants": "pipelines.optimization.variants",
    "ray_runtime": "pipelines.runtime",
    "environment": "pipelines.runtime",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import pipelines.embedding` gives the module at its new path (the same object)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        name = fullname.removeprefix(f"{__name__}.")
        if name == fullname or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name.removeprefix(f"{__name__}.")]
        warnings.warn(f"{spec.name} moved to {new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Already executed under its new name."""


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
