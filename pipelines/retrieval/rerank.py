"""The reranking stage of the one retriever: the first `rerank_depth` hits are reordered by
either backend:

- a cross-encoder that reads the question with each hit: a local folder a user brings, or one
  `ragline finetune --reranker` trained from the packaged MiniLM weights on the collection's
  training pairs (optimization/finetune.py);
- a feature ranker (retrieval/ltr.py), learned by `ragline optimize` from the search split
  (optimization/ranker.py): no model reads the passages, so it costs well under a millisecond;
- the generator backend as a listwise reranker (retrieval/listwise.py, kind "llm"), when a capable
  LLM is configured: the caller hands in the model (LLM), retrieval never builds one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipelines.models import ModelNotFoundError, offline_env, tuned_model_path
from pipelines.retrieval.listwise import ListwiseReranker, LLMFactory
from pipelines.retrieval.ltr import MODEL_FILE, FeatureRanker
from pipelines.retrieval.query import Hit


class Reranker:
    """Scores (question, passage) pairs with a sentence-transformers `CrossEncoder` from MODEL_PATH."""

    def __init__(
        self, model_path: str | Path, device: str = "cpu", batch_size: int = 16, threads: int | None = None
    ) -> None:
        offline_env()
        import torch
        from sentence_transformers.cross_encoder import CrossEncoder

        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"reranker folder {path} has no config.json (hub names are not loaded)")
        if threads:
            torch.set_num_threads(threads)
        self.model_path = path.resolve()
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = batch_size
        self.model = CrossEncoder(str(self.model_path), device=self.device, local_files_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"model_path": str(self.model_path), "device": self.device, "batch_size": self.batch_size}

    def rerank_many(self, queries: Sequence[str], hits: Sequence[list[Hit]], depth: int) -> list[list[Hit]]:
        """Each query's first DEPTH hits reordered by the cross-encoder (its score replaces the
        fused one); the hits past DEPTH keep their order after them. One forward pass for all."""
        pairs = [(q, h.text) for q, found in zip(queries, hits, strict=True) for h in found[:depth]]
        if not pairs:
            return [list(found) for found in hits]
        scores = iter(self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False).tolist())
        out: list[list[Hit]] = []
        for found in hits:
            head = [replace(h, score=round(float(next(scores)), 6)) for h in found[:depth]]
            out.append(sorted(head, key=lambda h: -h.score) + list(found[depth:]))
        return out


AnyReranker = Reranker | FeatureRanker | ListwiseReranker
LLM_KIND = ListwiseReranker.kind
log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _load(path: str, kind: str, device: str) -> AnyReranker:
    if kind == FeatureRanker.kind:
        return FeatureRanker.load(path)
    return Reranker(path, device=device, threads=None)


def _kind_of(path: str | None) -> str:
    """What a user names (RAGLINE_RERANKER_MODEL): `llm`, or a folder: a feature ranker's where it
    holds one."""
    if path == LLM_KIND:
        return LLM_KIND
    return FeatureRanker.kind if path and (Path(path) / MODEL_FILE).is_file() else "cross-encoder"


def load_reranker(
    spec: Mapping[str, Any] | None, cache_dir: Path, device: str = "cpu", llm: LLMFactory | None = None
) -> AnyReranker | None:
    """A champion's or a candidate's reranker ({"path", "uri", "kind"}: a cross-encoder folder, or
    a feature ranker's where KIND says so or the folder holds its `ranker.json`; fetched from
    MLflow where its folder is missing), loaded once per process; None without one. Kind "llm":
    the model LLM gives, or none (with a warning) where the settings configure no capable one."""
    kind = (spec or {}).get("kind") or _kind_of((spec or {}).get("path"))
    if kind == LLM_KIND:
        model = llm() if llm else None
        if model is None:
            log.warning(
                "the listwise reranker needs an OpenAI-compatible generator (RAGLINE_GENERATOR=openai)"
            )
            return None
        return ListwiseReranker(model)
    marker = MODEL_FILE if kind == FeatureRanker.kind else "config.json"
    path = tuned_model_path(spec, None, cache_dir / "rerankers", marker=marker)
    return _load(path, kind, device) if path else None
