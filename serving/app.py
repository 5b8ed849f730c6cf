"""The Ray Serve graph: HTTP ingress (FastAPI) → retriever service (→ query embedder, once per
search batch) → generator.

A search is one call from the ingress: the retriever service batches the searches that arrive
while it is busy and asks the embedder for the batch's vectors (benchmarks/README.md has why).
Each deployment wraps one `pipelines` component; the same `Retriever` class answers here, in
evaluation and in notebooks. `build_app(settings)` composes the graph; `app_builder(args)` is the
entry point for Serve config files (`import_path: serving.app:app_builder`).
"""

# No `from __future__ import annotations` here: Serve ships the ingress class to replicas by value,
# and FastAPI must see the real body types, not strings it cannot resolve there.
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from pipelines.embedding import Embedder
from pipelines.generation import GenerationError, cut_at_stop, make_generator
from pipelines.prompts import PROMPT_VERSION, build_messages, condense
from pipelines.retrieval import Embed, Hit, Query, RetrievalConfig, Retriever
from pipelines.settings import Settings, validate_collection
from pipelines.store import Store
from serving import auth, errors, observability, resilience
from serving.batching import Batcher, release_slot
from serving.schemas import (
    ChatCompletionRequest,
    ChatRequest,
    ChatResponse,
    FeedbackRequest,
    FeedbackResponse,
    SearchRequest,
    SearchResponse,
    Source,
    Timings,
    Usage,
)
from serving.sessions import HISTORY_TURNS, SessionStore, UnknownMessageError

api = FastAPI(
    title="ragline",
    version="0.1.0",
    description="Retrieval-augmented chat over your collections, with sources.",
)
errors.install(api)
auth.install(api)  # API keys on /v1 when RAGLINE_AUTH=true (it finds `ChatIngress.guard`)
observability.install(api)  # metrics, request ids, JSON log lines; installed last: it sees every response
# Read at import: Serve ships the ingress class by value, the package data stays on the driver side.
CHAT_PAGE = (files("serving") / "static" / "index.html").read_text(encoding="utf-8")


# Helpers come before the deployments: Serve ships the ingress class to its replicas by value.
def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _degraded_answer(hits: list[dict[str, Any]]) -> str:
    if not hits:
        return "No answer could be generated, and no passage matched the question."
    lines = [f"[{i}] {h['title']}: {h['text'][:300].strip()}" for i, h in enumerate(hits, start=1)]
    return "The answer could not be generated; the most relevant passages are:\n" + "\n".join(lines)


def _model_mismatch(r: Retriever, query_model_hash: str) -> errors.IndexModelMismatchError:
    return errors.IndexModelMismatchError(
        f"collection {r.collection!r} was embedded with {r.model.name} ({r.model.path_hash[:8]}); the "
        f"query embedder runs another model ({query_model_hash[:8]}): re-embed or change the model"
    )


def _source(hit: dict[str, Any]) -> dict[str, Any]:
    return {k: hit[k] for k in ("id", "doc_id", "title", "score", "text", "source_uri")}


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,  # >= the batch size, or batches never fill
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class QueryEmbedder:
    """Embeds queries. Callers send lists (the retriever sends each of its search batches), and
    lists that arrive together are embedded in one forward pass."""

    def __init__(self, settings: dict[str, Any]) -> None:
        s = Settings(**settings)
        self.embedder = Embedder(s.embedding_model, device=s.embed_device, threads=1)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Live batching knobs: {"max_batch_size": 8, "batch_wait_timeout_s": 0.0}; a batch here
        is a number of callers' lists."""
        cfg = user_config or {}
        self.embed.set_max_batch_size(int(cfg.get("max_batch_size", 8)))
        self.embed.set_batch_wait_timeout_s(float(cfg.get("batch_wait_timeout_s", 0.0)))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def embed(self, lists: list[list[str]]) -> list[dict[str, Any]]:
        """{"model_hash": the model's fingerprint, "vectors": float32 rows} per list."""
        vectors = self.embedder.embed([q for queries in lists for q in queries])
        out, start = [], 0
        for queries in lists:
            out.append(
                {"model_hash": self.embedder.info.path_hash, "vectors": vectors[start : start + len(queries)]}
            )
            start += len(queries)
        return out


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,  # >= the batch size, or batches never fill
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class RetrieverService:
    """Answers searches in batches: one call to the query embedder and one LanceDB vector scan per
    batch. One `Retriever` per collection; it re-reads which index table is active every few
    seconds, so a new embed run or a newly promoted index is served without a restart."""

    RECHECK_S = 5.0
    MAX_BATCH = 32
    # One batch at the embedder at a time (a batch releases its slot once its vectors are back, and
    # is searched while the next is embedded): what arrives meanwhile makes the next batch bigger.
    # On 2 cores that beat two overlapping batches by ~5% in requests/s (benchmarks/README.md).
    SLOTS = 1

    def __init__(self, embedder: DeploymentHandle, settings: dict[str, Any]) -> None:
        self.embedder = embedder
        self._batcher = Batcher(self._search_batch, self.MAX_BATCH, self.SLOTS)
        self.settings = Settings(**settings)
        self.store = Store(self.settings.lancedb_location, read_consistency=timedelta(seconds=self.RECHECK_S))
        self.config = RetrievalConfig.from_settings(self.settings)
        self._base = self.config
        self._override: dict[str, Any] = {}
        # collection -> (retriever, checked at, (active table, champion version), table version)
        self._retrievers: dict[str, tuple[Retriever, float, tuple[str, str | None], int]] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this on every live replica when the app's `user_config` changes (no restart):
        retrieval parameters an operator sets live, e.g. {"retrieval": {"mode": ..., "rrf_k": ...}},
        which apply on top of each collection's promoted champion, {"max_batch_size": 32} (1 turns
        search batching off) and {"max_concurrent_batches": 1}."""
        cfg = user_config or {}
        max_size = int(cfg.get("max_batch_size", self.MAX_BATCH))
        slots = int(cfg.get("max_concurrent_batches", self.SLOTS))
        if max_size < 1 or slots < 1:
            raise ValueError("max_batch_size and max_concurrent_batches must be >= 1")
        self._batcher.max_size, self._batcher.slots = max_size, slots
        self._override = dict(cfg.get("retrieval") or {})
        self.config = RetrievalConfig(**{**asdict(self._base), **self._override})  # validates now
        self._retrievers.clear()

    def _get(self, collection: str) -> Retriever:
        """The collection's retriever; every RECHECK_S it looks whether a new index was built or a
        new champion promoted (`ragline optimize`), and follows."""
        cached = self._retrievers.get(collection)
        now = time.monotonic()
        if cached and now - cached[1] < self.RECHECK_S:
            return cached[0]
        active = self.store.active_index(collection)
        state = (active.name, (self.store.champion(collection) or {}).get("version"))
        retriever = cached[0] if cached and cached[2] == state else None
        if retriever is None:
            retriever = Retriever.champion(self.store, collection, self._base, **self._override)
        # The table version is read here, not per request: a sync LanceDB call costs a thread hop,
        # and the store itself sees new versions only every RECHECK_S.
        self._retrievers[collection] = (retriever, now, state, retriever.table_version)
        return retriever

    def describe(self, collection: str) -> dict[str, Any]:
        r = self._get(collection)
        return {**r.to_dict(), "table_version": r.table_version}

    def collections(self) -> list[str]:
        return self.store.collections()

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int | None,
        mode: str | None,
        filters: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """{"hits": [...], "mode": the mode used, "version": "<table>@v<n>/<mode>", and for the
        ingress's metrics and traces "embed_ms" (the batch's query embedding), "search_ms"}."""
        t = time.perf_counter()
        cached = self._retrievers.get(collection)
        r = self._get(collection)
        used = mode or r.config.mode
        query_ = Query(query, None, top_k, used, filters)  # type: ignore[arg-type]
        hits, embed_ms = await self._batcher.submit((r, query_))
        return {
            "hits": [h.to_dict() for h in hits],
            "mode": used,
            "version": f"{r.table.name}@v{self._retrievers[collection][3]}/{used}",
            "embed_ms": embed_ms,
            "search_ms": round(_ms(t) - (embed_ms or 0.0), 1),
            "cache_hit": cached is not None and cached[0] is r,
        }

    async def _search_batch(
        self, calls: list[tuple[Retriever, Query]]
    ) -> list[tuple[list[Hit], float | None] | Exception]:
        """Searches that arrived while the replica was busy (serving/batching.py) share one embedder
        call and one LanceDB vector scan per collection; their full-text searches run while the
        embedder works, and the next batch goes to the embedder while this one is searched. A bad
        query (a filter on an unknown field, say) fails alone: its group is retried one by one."""
        out: list[Any] = [None] * len(calls)
        by_retriever: dict[int, list[int]] = {}
        for i, (r, _) in enumerate(calls):
            by_retriever.setdefault(id(r), []).append(i)
        for members in by_retriever.values():
            r = calls[members[0]][0]
            queries = [calls[i][1] for i in members]
            timing: dict[str, float] = {}
            try:
                results: list[Any] = await r.aretrieve_many(queries, self._embed_for(r, timing))
            except Exception:
                one_by_one = [r.aretrieve_many([q], self._embed_for(r, timing)) for q in queries]
                results = await asyncio.gather(*one_by_one, return_exceptions=True)
                results = [x if isinstance(x, Exception) else x[0] for x in results]
            for i, result in zip(members, results, strict=True):
                out[i] = result if isinstance(result, Exception) else (result, timing.get("embed_ms"))
        return out

    def _embed_for(self, r: Retriever, timing: dict[str, float]) -> Embed:
        """The query embedder as R's embed function: asked again once if its replica died, and
        checked to run the model R's index was built with."""

        async def embed(texts: list[str]) -> Any:
            t = time.perf_counter()
            embedded = await resilience.retry_if_replica_died(lambda: self.embedder.embed.remote(texts))
            timing["embed_ms"] = _ms(t)
            release_slot()  # the next batch may go to the embedder while this one is searched
            if embedded["model_hash"] != r.model.path_hash:
                raise _model_mismatch(r, embedded["model_hash"])
            return embedded["vectors"]

        return embed


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=4)
class GeneratorService:
    """Builds the numbered-sources prompt with the model's own tokenizer and generates the answer."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        self.generator = make_generator(self.settings, threads=2)

    def describe(self) -> dict[str, Any]:
        return self.generator.to_dict() if self.generator else {"backend": "none"}

    def _prompt(
        self, question: str, hits: list[dict[str, Any]], history: list[dict[str, str]]
    ) -> tuple[list[dict[str, str]], int]:
        if self.generator is None:
            raise GenerationError("generation is turned off (RAGLINE_GENERATOR=none)")
        messages, used = build_messages(
            question,
            [Hit(**h) for h in hits],
            self.generator.count_tokens,
            budget=self.settings.context_tokens,
            history=history,
        )
        return messages, len(used)

    def _sampling(self, max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
        return {
            "max_tokens": max_tokens or self.settings.max_new_tokens,
            "temperature": self.settings.temperature if temperature is None else temperature,
        }

    def answer(
        self,
        question: str,
        hits: list[dict[str, Any]],
        history: list[dict[str, str]],
        max_tokens: int | None,
        temperature: float | None,
    ) -> dict[str, Any]:
        messages, used = self._prompt(question, hits, history)
        assert self.generator is not None
        out = self.generator.generate(messages, **self._sampling(max_tokens, temperature))
        return {**out.to_dict(), "used": used}

    def stream(
        self,
        question: str,
        hits: list[dict[str, Any]],
        history: list[dict[str, str]],
        max_tokens: int | None,
        temperature: float | None,
    ) -> Iterator[dict[str, Any]]:
        """Yields {"text": piece}... then {"done": {usage, model, used}}."""
        messages, used = self._prompt(question, hits, history)
        assert self.generator is not None
        pieces: list[str] = []
        for piece in self.generator.stream(messages, **self._sampling(max_tokens, temperature)):
            pieces.append(piece)
            yield {"text": piece}
        prompt_tokens = sum(self.generator.count_tokens(m["content"]) for m in messages)
        yield {
            "done": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": self.generator.count_tokens("".join(pieces)),
                "model": self.generator.name,
                "used": used,
            }
        }


@dataclass
class _Turn:
    """What one chat request has gathered before generation."""

    collection: str
    session_id: str
    history: list[dict[str, str]]
    hits: list[dict[str, Any]]
    config_version: str
    timings: Timings


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


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
        self.sessions = SessionStore(self.settings.sessions_database)
        observability.configure(self.settings)
        self.guard = auth.Guard.from_settings(self.settings)  # None when auth is off

    def _collection(self, name: str | None) -> str:
        collection = auth.allow(validate_collection(name or self.settings.default_collection))
        observability.note(collection=collection)
        return collection

    async def _retrieve(
        self,
        collection: str,
        query: str,
        top_k: int | None,
        mode: str | None,
        filters: dict[str, Any] | None,
        timings: Timings,
    ) -> dict[str, Any]:
        t = time.perf_counter()

        async def search() -> dict[str, Any]:
            return await self.retriever.search.remote(collection, query, top_k, mode, filters)

        found = await resilience.retry_if_replica_died(search)  # read-only: safe to ask again
        timings.retrieval_ms = _ms(t)  # query embedding + search
        timings.embed_ms, timings.search_ms = found.get("embed_ms"), found.get("search_ms")
        observability.retrieved(t, query, found)
        return found

    async def _prepare(self, req: ChatRequest, history: list[dict[str, str]] | None) -> _Turn:
        """HISTORY: the client's own (OpenAI messages); None reads the session's."""
        collection = self._collection(req.collection)
        session_id = req.session_id or uuid.uuid4().hex
        if history is None:
            history = self.sessions.history(auth.session_key(session_id)) if req.session_id else []
        timings = Timings()
        found = await self._retrieve(
            collection, condense(req.message, history), req.top_k, None, req.filters, timings
        )
        version = f"{found['version']}/prompt-{PROMPT_VERSION}"
        return _Turn(collection, session_id, history, found["hits"], version, timings)

    def _finish(
        self,
        req: ChatRequest,
        turn: _Turn,
        answer: str,
        used: int,
        usage: Usage,
        model: str,
        degraded_reason: str | None,
    ) -> ChatResponse:
        """The response of a chat turn, recorded in the session (both the plain and the streamed path)."""
        response = ChatResponse(
            answer=answer,
            sources=[Source(**_source(h)) for h in turn.hits[:used]],
            session_id=turn.session_id,
            usage=usage,
            timings=turn.timings,
            config_version=turn.config_version,
            model=model,
            degraded=degraded_reason is not None,
            degraded_reason=degraded_reason,
        )
        observability.answered(response, req.message)
        response.message_id = self._record(auth.session_key(turn.session_id), req.message, response)
        auth.account(usage.prompt_tokens, usage.completion_tokens)
        return response

    def _record(self, session_id: str, question: str, response: ChatResponse) -> str:
        self.sessions.append(session_id, "user", question)
        return self.sessions.append(
            session_id,
            "assistant",
            response.answer,
            sources=[s.id for s in response.sources],
            config_version=response.config_version,
            degraded=response.degraded,
        )

    @api.post("/v1/chat", response_model=ChatResponse)
    async def chat(self, req: ChatRequest) -> Any:
        if req.stream:
            self._collection(req.collection)  # refuse (400, 403) before the stream starts
            return StreamingResponse(self._chat_events(req), media_type="text/event-stream")
        return await self._answer(req)

    async def _answer(self, req: ChatRequest, history: list[dict[str, str]] | None = None) -> ChatResponse:
        turn = await self._prepare(req, history)
        t = time.perf_counter()
        degraded_reason = None
        try:
            out = await asyncio.wait_for(
                self.generator.answer.remote(
                    req.message, turn.hits, turn.history, req.max_tokens, req.temperature
                ),
                timeout=self.settings.generation_timeout_s,
            )
            answer, used, model = out["text"], out["used"], out["model"]
            usage = Usage(prompt_tokens=out["prompt_tokens"], completion_tokens=out["completion_tokens"])
        except Exception as exc:  # degrade on any generator failure or timeout, never fail the request
            errors.log.warning("generation failed, answering with passages: %s", exc)
            degraded_reason = errors.message_of(exc) or type(exc).__name__
            answer, used, usage, model = _degraded_answer(turn.hits), len(turn.hits), Usage(), "none"
        turn.timings.generation_ms = _ms(t)
        return self._finish(req, turn, answer, used, usage, model, degraded_reason)

    async def _chat_events(
        self, req: ChatRequest, history: list[dict[str, str]] | None = None
    ) -> AsyncIterator[str]:
        """Server-sent events: `token` events, then one `done` event with the whole response."""
        try:
            turn = await self._prepare(req, history)
        except Exception as exc:
            yield _sse("error", {"error": {"code": "bad_request", "message": errors.message_of(exc)}})
            return
        t = time.perf_counter()
        pieces: list[str] = []
        done: dict[str, Any] | None = None
        degraded_reason = None
        try:
            stream = self.generator.options(stream=True).stream.remote(
                req.message, turn.hits, turn.history, req.max_tokens, req.temperature
            )
            async for item in stream:
                if "text" in item:
                    pieces.append(item["text"])
                    yield _sse("token", {"text": item["text"]})
                else:
                    done = item["done"]
        except Exception as exc:
            degraded_reason = errors.message_of(exc) or type(exc).__name__
        turn.timings.generation_ms = _ms(t)
        if done is None and degraded_reason is None:
            degraded_reason = "the generator ended without finishing"
        if done is None or degraded_reason is not None:
            response = self._finish(
                req, turn, _degraded_answer(turn.hits), len(turn.hits), Usage(), "none", degraded_reason
            )
        else:
            usage = Usage(prompt_tokens=done["prompt_tokens"], completion_tokens=done["completion_tokens"])
            response = self._finish(
                req, turn, cut_at_stop("".join(pieces)), done["used"], usage, done["model"], None
            )
        yield _sse("done", response.model_dump())

    @api.post("/v1/feedback", response_model=FeedbackResponse)
    async def feedback(self, req: FeedbackRequest) -> FeedbackResponse:
        try:
            feedback_id = self.sessions.add_feedback(
                req.message_id, req.rating, req.comment or "", auth.session_prefix()
            )
        except UnknownMessageError as exc:
            raise HTTPException(404, str(exc)) from exc
        return FeedbackResponse(id=feedback_id, message_id=req.message_id, rating=req.rating)

    @api.post("/v1/search", response_model=SearchResponse)
    async def search(self, req: SearchRequest) -> SearchResponse:
        collection = self._collection(req.collection)
        timings = Timings()
        found = await self._retrieve(collection, req.query, req.top_k, req.mode, req.filters, timings)
        return SearchResponse(
            results=[Source(**_source(h)) for h in found["hits"]],
            collection=collection,
            mode=found["mode"],
            timings=timings,
        )

    @api.post("/v1/chat/completions")
    async def chat_completions(self, req: ChatCompletionRequest) -> Any:
        """The OpenAI chat-completions shape; the collection is the `model` (or `collection`). The
        last user message is the question; the user and assistant turns before it are the history
        it is condensed with, as a session's would be."""
        last = next((i for i in range(len(req.messages) - 1, -1, -1) if req.messages[i].role == "user"), None)
        if last is None:
            raise ValueError("messages must contain a user message")
        history = [
            {"role": m.role, "content": m.content}
            for m in req.messages[:last]
            if m.role in ("user", "assistant") and m.content
        ][-2 * HISTORY_TURNS :]
        chat_req = ChatRequest(
            message=req.messages[last].content,
            collection=req.collection or req.model,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
        )
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = self._collection(chat_req.collection)  # refuse (400, 403) before a stream starts
        if req.stream:
            return StreamingResponse(
                self._completion_chunks(chat_req, history, completion_id, created, model),
                media_type="text/event-stream",
            )
        chat = await self._answer(chat_req, history)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
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

    async def _completion_chunks(
        self, req: ChatRequest, history: list[dict[str, str]], completion_id: str, created: int, model: str
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        async for event in self._chat_events(req, history):
            kind, _, data = event.partition("\ndata: ")
            payload = json.loads(data)
            if kind == "event: token":
                yield chunk({"content": payload["text"]})
            elif kind == "event: done":
                if payload["degraded"]:
                    yield chunk({"content": payload["answer"]})
                yield chunk({}, "stop", sources=payload["sources"], degraded=payload["degraded"])
            else:
                yield chunk({}, "error", error=payload["error"])
        yield "data: [DONE]\n\n"

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        names = auth.visible(await self.retriever.collections.remote())
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "ragline"} for n in names],
        }

    @api.get("/", include_in_schema=False)
    async def page(self) -> HTMLResponse:
        """The chat web page."""
        return HTMLResponse(CHAT_PAGE)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> dict[str, Any]:
        collection = self.settings.default_collection
        index = await self.retriever.describe.remote(collection)  # 404 until the index exists
        generator = await self.generator.describe.remote()
        await self.embedder.embed.remote(["ready"])
        return {"status": "ready", "collection": collection, "index": index, "generator": generator}


def build_app(settings: Settings, overrides: dict[str, dict[str, Any]] | None = None) -> serve.Application:
    """The graph; `overrides` maps a deployment name to its options (replicas, resources, autoscaling)."""
    portable = settings.portable()
    overrides = overrides or {}

    def bind(deployment: Any, *args: Any) -> Any:
        return deployment.options(**overrides.get(deployment.name, {})).bind(*args)

    embedder = bind(QueryEmbedder, portable)
    return bind(
        ChatIngress,
        embedder,
        bind(RetrieverService, embedder, portable),
        bind(GeneratorService, portable),
        portable,
    )


def app_builder(args: dict[str, Any]) -> serve.Application:
    """For Serve config files: `args` are Settings fields overriding the environment."""
    return build_app(Settings(**(args or {})))
