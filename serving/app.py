"""The Ray Serve graph: HTTP ingress (FastAPI) → query embedder → retriever → generator.

Each deployment wraps one `pipelines` component; the same `Retriever` class answers here, in
evaluation and in notebooks. `build_app(settings)` composes the graph; `app_builder(args)` is the
entry point for Serve config files (`import_path: serving.app:app_builder`).
"""

# No `from __future__ import annotations` here: Serve ships the ingress class to replicas by value,
# and FastAPI must see the real body types, not strings it cannot resolve there.
import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from pipelines.embedding import Embedder
from pipelines.generation import GenerationError, make_generator
from pipelines.prompts import PROMPT_VERSION, build_messages
from pipelines.retrieval import Hit, RetrievalConfig, Retriever
from pipelines.settings import Settings, validate_collection
from pipelines.store import Store
from serving import errors
from serving.schemas import (
    ChatCompletionRequest,
    ChatRequest,
    ChatResponse,
    SearchRequest,
    SearchResponse,
    Source,
    Timings,
    Usage,
)

api = FastAPI(
    title="ragline",
    version="0.1.0",
    description="Retrieval-augmented chat over your collections, with sources.",
)
errors.install(api)


# Helpers come before the deployments: Serve ships the ingress class to its replicas by value.
def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _degraded_answer(hits: list[dict[str, Any]]) -> str:
    if not hits:
        return "No answer could be generated, and no passage matched the question."
    lines = [f"[{i}] {h['title']}: {h['text'][:300].strip()}" for i, h in enumerate(hits, start=1)]
    return "The answer could not be generated; the most relevant passages are:\n" + "\n".join(lines)


def _source(hit: dict[str, Any]) -> dict[str, Any]:
    return {k: hit[k] for k in ("id", "doc_id", "title", "score", "text", "source_uri")}


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,  # >= the batch size, or batches never fill
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class QueryEmbedder:
    """Embeds queries; concurrent requests are batched into one forward pass."""

    def __init__(self, settings: dict[str, Any]) -> None:
        s = Settings(**settings)
        self.embedder = Embedder(s.embedding_model, device=s.embed_device, threads=1)

    def model_hash(self) -> str:
        return self.embedder.info.path_hash

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def __call__(self, queries: list[str]) -> list[list[float]]:
        return self.embedder.embed(queries).tolist()


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class RetrieverService:
    """One `Retriever` per collection, opened on first use."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        # Re-read table versions every few seconds, so a new embed run is served without a restart.
        self.store = Store(self.settings.lancedb_location, read_consistency=timedelta(seconds=5))
        self.config = RetrievalConfig(
            mode=self.settings.retrieval_mode,
            top_k=self.settings.top_k,
            rrf_k=self.settings.rrf_k,
            vector_weight=self.settings.vector_weight,
            text_weight=self.settings.text_weight,
        )
        self._retrievers: dict[str, Retriever] = {}

    def _get(self, collection: str) -> Retriever:
        if collection not in self._retrievers:
            self._retrievers[collection] = Retriever(self.store, collection, self.config)
        return self._retrievers[collection]

    def describe(self, collection: str) -> dict[str, Any]:
        r = self._get(collection)
        return {**r.to_dict(), "table_version": r.table_version}

    def collections(self) -> list[str]:
        return self.store.collections()

    def search(
        self,
        collection: str,
        query: str,
        vector: list[float] | None,
        model_hash: str | None,
        top_k: int | None,
        mode: str | None,
        filters: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        r = self._get(collection)
        if model_hash and model_hash != r.model.path_hash:
            raise errors.IndexModelMismatchError(
                f"collection {collection!r} was embedded with {r.model.name} ({r.model.path_hash[:8]}); "
                f"the query embedder runs another model ({model_hash[:8]}): re-embed or change the model"
            )
        hits = r.retrieve(query, vector, top_k=top_k, mode=mode, filters=filters)  # type: ignore[arg-type]
        return [h.to_dict() for h in hits]


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=4)
class GeneratorService:
    """Builds the numbered-sources prompt with the model's own tokenizer and generates the answer."""

    def __init__(self, settings: dict[str, Any]) -> None:
        s = Settings(**settings)
        self.settings = s
        self.generator = make_generator(s, threads=2)

    def describe(self) -> dict[str, Any]:
        return self.generator.to_dict() if self.generator else {"backend": "none"}

    def answer(
        self, question: str, hits: list[dict[str, Any]], max_tokens: int | None, temperature: float | None
    ) -> dict[str, Any]:
        if self.generator is None:
            raise GenerationError("generation is turned off (RAGLINE_GENERATOR=none)")
        sources = [Hit(**h) for h in hits]
        messages, used = build_messages(
            question, sources, self.generator.count_tokens, budget=self.settings.context_tokens
        )
        out = self.generator.generate(
            messages,
            max_tokens=max_tokens or self.settings.max_new_tokens,
            temperature=self.settings.temperature if temperature is None else temperature,
        )
        return {**out.to_dict(), "used": len(used)}


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
@serve.ingress(api)
class ChatIngress:
    def __init__(
        self,
        embedder: DeploymentHandle,
        retriever: DeploymentHandle,
        generator: DeploymentHandle,
        settings: dict[str, Any],
    ) -> None:
        self.embedder = embedder
        self.retriever = retriever
        self.generator = generator
        self.settings = Settings(**settings)
        self.generation_timeout_s = 120.0

    def _collection(self, name: str | None) -> str:
        return validate_collection(name or self.settings.default_collection)

    async def _retrieve(
        self,
        collection: str,
        query: str,
        top_k: int | None,
        mode: str | None,
        filters: dict[str, Any] | None,
        timings: Timings,
    ) -> list[dict[str, Any]]:
        t = time.perf_counter()
        needs_vector = (mode or self.settings.retrieval_mode) != "text"
        vector, model_hash = None, None
        if needs_vector:
            vector, model_hash = await asyncio.gather(
                self.embedder.remote(query), self.embedder.model_hash.remote()
            )
        timings.embed_ms = _ms(t)
        t = time.perf_counter()
        hits = await self.retriever.search.remote(collection, query, vector, model_hash, top_k, mode, filters)
        timings.retrieval_ms = _ms(t)
        return hits

    async def _config_version(self, collection: str) -> str:
        d = await self.retriever.describe.remote(collection)
        return f"{d['table']}@v{d['table_version']}/{d['mode']}/prompt-{PROMPT_VERSION}"

    @api.post("/v1/chat", response_model=ChatResponse)
    async def chat(self, req: ChatRequest) -> ChatResponse:
        if req.stream:
            raise ValueError("stream: true is not supported yet by this service; send stream: false")
        collection = self._collection(req.collection)
        timings = Timings()
        hits = await self._retrieve(collection, req.message, req.top_k, None, req.filters, timings)
        t = time.perf_counter()
        degraded_reason = None
        try:
            out = await asyncio.wait_for(
                self.generator.answer.remote(req.message, hits, req.max_tokens, req.temperature),
                timeout=self.generation_timeout_s,
            )
            answer, used = out["text"], out["used"]
            usage = Usage(prompt_tokens=out["prompt_tokens"], completion_tokens=out["completion_tokens"])
            model = out["model"]
        except Exception as exc:  # degrade on any generator failure or timeout, never fail the request
            errors.log.warning("generation failed, answering with passages: %s", exc)
            degraded_reason = errors._message(exc)
            answer, used, usage, model = _degraded_answer(hits), len(hits), Usage(), "none"
        timings.generation_ms = _ms(t)
        return ChatResponse(
            answer=answer,
            sources=[Source(**_source(h)) for h in hits[:used]],
            session_id=req.session_id or uuid.uuid4().hex,
            usage=usage,
            timings=timings,
            config_version=await self._config_version(collection),
            model=model,
            degraded=degraded_reason is not None,
            degraded_reason=degraded_reason,
        )

    @api.post("/v1/search", response_model=SearchResponse)
    async def search(self, req: SearchRequest) -> SearchResponse:
        collection = self._collection(req.collection)
        timings = Timings()
        hits = await self._retrieve(collection, req.query, req.top_k, req.mode, req.filters, timings)
        return SearchResponse(
            results=[Source(**_source(h)) for h in hits],
            collection=collection,
            mode=req.mode or self.settings.retrieval_mode,
            timings=timings,
        )

    @api.post("/v1/chat/completions")
    async def chat_completions(self, req: ChatCompletionRequest) -> dict[str, Any]:
        question = next((m.content for m in reversed(req.messages) if m.role == "user"), None)
        if question is None:
            raise ValueError("messages must contain a user message")
        chat = await self.chat(
            ChatRequest(
                message=question,
                collection=req.collection or req.model,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
            )
        )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model or self._collection(req.collection),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": chat.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": chat.usage.prompt_tokens,
                "completion_tokens": chat.usage.completion_tokens,
                "total_tokens": chat.usage.prompt_tokens + chat.usage.completion_tokens,
            },
            "sources": [s.model_dump() for s in chat.sources],
            "degraded": chat.degraded,
        }

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        names = await self.retriever.collections.remote()
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "owned_by": "ragline"} for n in names],
        }

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> dict[str, Any]:
        collection = self.settings.default_collection
        index = await self.retriever.describe.remote(collection)  # 404 until the index exists
        generator = await self.generator.describe.remote()
        await self.embedder.remote("ready")
        return {"status": "ready", "collection": collection, "index": index, "generator": generator}


def build_app(settings: Settings, overrides: dict[str, dict[str, Any]] | None = None) -> serve.Application:
    """The graph; `overrides` maps a deployment name to its options (replicas, resources, autoscaling)."""
    portable = settings.portable()
    overrides = overrides or {}

    def bind(deployment: Any, *args: Any) -> Any:
        return deployment.options(**overrides.get(deployment.name, {})).bind(*args)

    return bind(
        ChatIngress,
        bind(QueryEmbedder, portable),
        bind(RetrieverService, portable),
        bind(GeneratorService, portable),
        portable,
    )


def app_builder(args: dict[str, Any]) -> serve.Application:
    """For Serve config files: `args` are Settings fields overriding the environment."""
    return build_app(Settings(**(args or {})))
