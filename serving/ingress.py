"""The HTTP ingress: the FastAPI app (chat, search, OpenAI-compatible routes, feedback, the chat page,
health) as a Serve deployment that searches itself (`retriever: inline`) or calls the retriever
deployment, and calls the generator deployment."""

# No `from __future__ import annotations` here: Serve ships the ingress class to replicas by value,
# and FastAPI must see the real body types, not strings it cannot resolve there.
import asyncio
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from pipelines.generation import refusal
from pipelines.generation.citations import DROPPED
from pipelines.generation.cleanup import clean_answer
from pipelines.generation.prompts import PROMPT_VERSION, condense
from pipelines.settings import Settings, validate_collection
from serving import auth, errors, observability, openai_compat, resilience
from serving.retriever import Searcher
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
from serving.timing import elapsed_ms

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
def _degraded_answer(hits: list[dict[str, Any]]) -> str:
    if not hits:
        return "No answer could be generated, and no passage matched the question."
    lines = [f"[{i}] {h['title']}: {h['text'][:300].strip()}" for i, h in enumerate(hits, start=1)]
    return "The answer could not be generated; the most relevant passages are:\n" + "\n".join(lines)


def _source(hit: dict[str, Any], min_similarity: float | None = None) -> dict[str, Any]:
    shown = {k: hit[k] for k in ("id", "doc_id", "title", "score", "text", "source_uri")}
    similarity = hit.get("similarity")
    return shown | {"similarity": similarity, "relevance": refusal.relevance(similarity, min_similarity)}


@dataclass
class _Turn:
    """What one chat request has gathered before generation."""

    collection: str
    session_id: str
    history: list[dict[str, str]]
    hits: list[dict[str, Any]]
    config_version: str
    timings: Timings
    min_similarity: float | None = None  # refuse below this evidence (pipelines/generation/refusal.py)

    @property
    def refused(self) -> bool:
        return refusal.refuses(self.hits, self.min_similarity)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
@serve.ingress(api)
class ChatIngress:
    def __init__(
        self,
        retriever: DeploymentHandle | None,
        generator: DeploymentHandle,
        settings: dict[str, Any],
        embedder: DeploymentHandle | None = None,
    ) -> None:
        self.retriever = retriever  # None: this replica searches itself (retriever: inline)
        self.searcher = Searcher(embedder, settings) if retriever is None else None
        self.generator = generator
        self.settings = Settings(**settings)
        self.sessions = SessionStore(self.settings.sessions_database)
        observability.configure(self.settings)
        self.guard = auth.Guard.from_settings(self.settings)  # None when auth is off

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The searcher's live parameters when it runs here (see `Searcher.reconfigure`)."""
        if self.searcher is not None:
            self.searcher.reconfigure(user_config)

    async def _search(self, method: str, *args: Any) -> Any:
        """The searcher's METHOD: in this replica (sync ones in a thread, the event loop keeps
        serving), or one call to the retriever deployment."""
        if self.searcher is None:
            assert self.retriever is not None
            return await getattr(self.retriever, method).remote(*args)
        fn = getattr(self.searcher, method)
        return await fn(*args) if inspect.iscoroutinefunction(fn) else await asyncio.to_thread(fn, *args)

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
            return await self._search("search", collection, query, top_k, mode, filters)

        found = await resilience.retry_if_replica_died(search)  # read-only: safe to ask again
        timings.retrieval_ms = elapsed_ms(t)  # query embedding + search
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
        return _Turn(
            collection, session_id, history, found["hits"], version, timings, found.get("min_similarity")
        )

    def _finish(
        self,
        req: ChatRequest,
        turn: _Turn,
        answer: str,
        used: int,
        usage: Usage,
        model: str,
        degraded_reason: str | None,
        check: dict[str, Any] | None = None,
    ) -> ChatResponse:
        """The response of a chat turn, recorded in the session (both the plain and the streamed path).
        CHECK: the generator's citation check; a degraded answer quotes the passages themselves."""
        check = check or {"grounded": degraded_reason is not None and bool(turn.hits[:used])}
        response = ChatResponse(
            answer=check.get("text", answer),
            grounded=check["grounded"],
            citations=check.get("citations", []),
            refused=check.get("refused", False),
            sources=[Source(**_source(h, turn.min_similarity)) for h in turn.hits[:used]],
            session_id=turn.session_id,
            usage=usage,
            timings=turn.timings,
            config_version=turn.config_version,
            model=model,
            degraded=degraded_reason is not None,
            degraded_reason=degraded_reason,
        )
        observability.answered(response, req.message)
        response.message_id = self._record(
            auth.session_key(turn.session_id), req.message, response, turn.collection
        )
        auth.account(usage.prompt_tokens, usage.completion_tokens)
        return response

    def _refusal(self, req: ChatRequest, turn: _Turn) -> ChatResponse:
        """The sources do not answer: say so, list the closest ones, and do not call the model."""
        shown = req.top_k or len(turn.hits)
        check = {"grounded": False, "refused": True}
        return self._finish(req, turn, refusal.REFUSAL_ANSWER, shown, Usage(), "none", None, check)

    def _record(self, session_id: str, question: str, response: ChatResponse, collection: str) -> str:
        """The exchange, with what a feedback export needs: the collection and the cited sources."""
        self.sessions.append(session_id, "user", question)
        cited = {n for c in response.citations if c.status not in DROPPED for n in c.sources}
        return self.sessions.append(
            session_id,
            "assistant",
            response.answer,
            sources=[s.id for s in response.sources],
            cited=[s.id for n, s in enumerate(response.sources, 1) if n in cited],
            **{"collection": collection, "question": question, "refused": response.refused},
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
        if turn.refused:
            return self._refusal(req, turn)
        t = time.perf_counter()
        degraded_reason = None
        try:
            out = await asyncio.wait_for(
                self.generator.answer.remote(
                    req.message, turn.hits, turn.history, req.max_tokens, req.temperature, turn.min_similarity
                ),
                timeout=self.settings.generation_timeout_s,
            )
            answer, used, model, check = out["text"], out["used"], out["model"], out
            usage = Usage(prompt_tokens=out["prompt_tokens"], completion_tokens=out["completion_tokens"])
        except Exception as exc:  # degrade on any generator failure or timeout, never fail the request
            errors.log.warning("generation failed, answering with passages: %s", exc)
            degraded_reason = errors.message_of(exc) or type(exc).__name__
            answer, used, usage, model = _degraded_answer(turn.hits), len(turn.hits), Usage(), "none"
            check = None
        turn.timings.generation_ms = elapsed_ms(t)
        return self._finish(req, turn, answer, used, usage, model, degraded_reason, check)

    async def _chat_events(
        self, req: ChatRequest, history: list[dict[str, str]] | None = None
    ) -> AsyncIterator[str]:
        """Server-sent events: `token` events, then one `done` event with the whole response."""
        try:
            turn = await self._prepare(req, history)
        except Exception as exc:
            yield _sse("error", {"error": {"code": "bad_request", "message": errors.message_of(exc)}})
            return
        if turn.refused:
            yield _sse("done", self._refusal(req, turn).model_dump())
            return
        t = time.perf_counter()
        pieces: list[str] = []
        done: dict[str, Any] | None = None
        degraded_reason = None
        stream = self.generator.options(stream=True).stream.remote(
            req.message, turn.hits, turn.history, req.max_tokens, req.temperature, turn.min_similarity
        )
        try:  # the same timeout as the plain path; a client gone or a timeout stops the engine too
            async with asyncio.timeout(self.settings.generation_timeout_s):
                async for item in stream:
                    if "text" in item:
                        pieces.append(item["text"])
                        yield _sse("token", {"text": item["text"]})
                    else:
                        done = item["done"]
        except TimeoutError:
            degraded_reason = f"generation took longer than {self.settings.generation_timeout_s:g} s"
        except Exception as exc:
            degraded_reason = errors.message_of(exc) or type(exc).__name__
        finally:
            if done is None:
                stream.cancel()
        turn.timings.generation_ms = elapsed_ms(t)
        if done is None and degraded_reason is None:
            degraded_reason = "the generator ended without finishing"
        if done is None or degraded_reason is not None:
            response = self._finish(
                req, turn, _degraded_answer(turn.hits), len(turn.hits), Usage(), "none", degraded_reason
            )
        else:
            usage = Usage(prompt_tokens=done["prompt_tokens"], completion_tokens=done["completion_tokens"])
            answer = clean_answer("".join(pieces))
            response = self._finish(req, turn, answer, done["used"], usage, done["model"], None, done)
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
        collection, timings = self._collection(req.collection), Timings()
        found = await self._retrieve(collection, req.query, req.top_k, req.mode, req.filters, timings)
        return SearchResponse(
            results=[Source(**_source(h, found.get("min_similarity"))) for h in found["hits"]],
            collection=collection,
            mode=found["mode"],
            timings=timings,
            config_version=found["version"],
        )

    @api.post("/v1/chat/completions")
    async def chat_completions(self, req: ChatCompletionRequest) -> Any:
        """The OpenAI chat-completions shape; the collection is the `model` (or `collection`). The
        last user message is the question; the user and assistant turns before it are the history
        it is condensed with, as a session's would be."""
        question, history = openai_compat.split_messages(req.messages, 2 * HISTORY_TURNS)
        chat_req = ChatRequest(
            message=question,
            collection=req.collection or req.model,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
        )
        completion = openai_compat.Completion(self._collection(chat_req.collection))  # refuse first
        if req.stream:
            return StreamingResponse(
                completion.chunks(self._chat_events(chat_req, history)), media_type="text/event-stream"
            )
        return completion.body(await self._answer(chat_req, history))

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        names = auth.visible(await self._search("collections"))
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
        index = await self._search("describe", collection)  # 404 until the index exists
        generator = await self.generator.describe.remote()
        await self._search("embed_ready")
        return {"status": "ready", "collection": collection, "index": index, "generator": generator}
