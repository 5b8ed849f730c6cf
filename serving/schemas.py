"""Request and response bodies of the HTTP API (INTERFACE.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt, field_validator

from pipelines.generation.citations import Status

MAX_MESSAGE_CHARS = 4000
# Bounds on everything a client sends (the body as a whole is capped by errors.MAX_BODY_BYTES).
Name = Annotated[str, Field(max_length=64)]  # a collection; its pattern is checked with a 400 reason
SessionId = Annotated[str, Field(min_length=1, max_length=128)]
# StrictInt: a JSON true is not the number 1 (pydantic would coerce it).
FilterScalar = Annotated[str, Field(max_length=512)] | StrictInt
FilterValue = FilterScalar | Annotated[list[FilterScalar], Field(min_length=1, max_length=100)]
Filters = Annotated[
    dict[Annotated[str, Field(max_length=64)], FilterValue],
    Field(max_length=8, description="metadata equality/membership: doc_id, title, source_uri, chunk_index"),
]


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    collection: Name | None = None
    session_id: SessionId | None = None
    stream: bool = False
    top_k: int | None = Field(default=None, ge=1, le=50)
    filters: Filters | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1024)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)


class Source(BaseModel):
    id: str
    doc_id: str
    title: str
    score: float
    text: str
    source_uri: str = ""
    similarity: float | None = None  # cosine to the question, where the vector search found it
    relevance: Literal["high", "medium", "low"] | None = None  # against the collection's threshold


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Timings(BaseModel):
    retrieval_ms: float = Field(default=0.0, description="the ingress's call to the retriever, end to end")
    embed_ms: float | None = Field(
        default=None, description="of which the retriever's call to the query embedder (its search batch's)"
    )
    search_ms: float | None = Field(default=None, description="of which the retriever's own work")
    generation_ms: float = 0.0


class CitationCheck(BaseModel):
    sentence: str
    sources: list[int] = Field(description="the [n] the sentence cites, 1-based into `sources`")
    status: Status = Field(
        description="checked: the model's own citation, verified; repaired: set by the check; "
        "unsupported: no source supports the sentence, so it was dropped from the answer; "
        "redundant: dropped, it said nothing new; trimmed: supported but past the answer's sentence "
        "limit (RAGLINE_ANSWER_SENTENCES), or a source's sentence was closer to the question; "
        "quoted: the sources' sentence shown in place of "
        "an answer no source supported"
    )


class ChatResponse(BaseModel):
    answer: str
    sources: list[Source]
    session_id: str
    usage: Usage
    timings: Timings
    config_version: str
    model: str
    degraded: bool = False
    degraded_reason: str | None = None
    grounded: bool = False  # every sentence shown is supported by a cited source
    citations: list[CitationCheck] = Field(default_factory=list)
    refused: bool = False  # the sources do not answer the question; the model was not called
    message_id: str | None = None  # for POST /v1/feedback
    request_id: str | None = None  # the X-Request-ID of the response; in logs and traces


class FeedbackRequest(BaseModel):
    message_id: str = Field(min_length=1, max_length=64)
    rating: int = Field(ge=-1, le=5, description="-1/1 thumbs, or 1-5 stars")
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackResponse(BaseModel):
    id: str
    message_id: str
    rating: int


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    collection: Name | None = None
    top_k: int | None = Field(default=None, ge=1, le=100)
    mode: Literal["hybrid", "vector", "text"] | None = None
    filters: Filters | None = None


class SearchResponse(BaseModel):
    results: list[Source]
    collection: str
    mode: str
    timings: Timings
    config_version: str = Field(default="", description="<index table>@v<n>/<mode>[+rerank<depth>]")


class OpenAIMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str = Field(default="", max_length=MAX_MESSAGE_CHARS * 4)

    @field_validator("content", mode="before")
    @classmethod
    def _text_of_parts(cls, value: object) -> object:
        """OpenAI clients may send content as parts, [{"type": "text", "text": ...}]; their text is
        the message. Other parts (images, audio) are refused by name; null (an assistant turn that
        only called tools) is empty."""
        if value is None:
            return ""
        if not isinstance(value, list):
            return value
        texts = []
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"only text content parts are supported, got a {kind!r} part")
            texts.append(part["text"])
        return "\n".join(texts)


class ChatCompletionRequest(BaseModel):
    model: Annotated[str, Field(max_length=128)] | None = None  # the collection
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(default=None, ge=1, le=1024)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stream: bool = False
    collection: Name | None = None


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
