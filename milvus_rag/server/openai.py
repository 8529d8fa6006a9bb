"""The OpenAI-compatible endpoint: ``GET /v1/models`` and ``POST /v1/chat/completions``
(plain and streamed), so any OpenAI client or ``ChatOpenAI`` can ask questions."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from langchain_core.callbacks import AsyncCallbackHandler
from pydantic import BaseModel, Field, field_validator

from milvus_rag.errors import MilvusRAGError
from milvus_rag.redaction import Redactor
from milvus_rag.server.auth import require_key
from milvus_rag.server.guards import check_history, check_question
from milvus_rag.server.logs import server_log
from milvus_rag.server.state import AppState, app_state
from milvus_rag.server.status import error_body, status_of
from milvus_rag.telemetry import record_error

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "StreamOptions",
    "Usage",
    "chat_completions",
    "models",
    "router",
]

router = APIRouter(dependencies=[Depends(require_key)])


class ChatMessage(BaseModel):
    """One message of an OpenAI chat request (text content only)."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        from milvus_rag.chains.history import message_text

        return str(message_text(self.content))


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``: ``include_usage`` adds a final usage chunk."""

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of OpenAI's chat-completions request milvus-rag reads.

    The question is the last ``user`` message; the ``user`` and ``assistant``
    messages before it are its chat history (a follow-up is rewritten into a
    standalone question before retrieval); ``system`` (and ``developer``)
    messages are appended to the tutorial's system message. ``temperature``,
    ``max_tokens`` (or ``max_completion_tokens``) and ``stop`` apply to the
    answer's LLM call; ``citations`` asks for a cited answer (default
    ``answer.citations``).
    """

    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    citations: bool | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("stop takes at most 4 sequences")
        for text in [value] if isinstance(value, str) else value or []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # it would fail the LLM request's encoding (a 500)
                raise ValueError("stop sequences must be valid Unicode text") from None
        return value

    def _last_user(self) -> int | None:
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].role == "user":
                return index
        return None

    def question(self) -> str:
        """The last user message's text (empty without one)."""
        index = self._last_user()
        return self.messages[index].text() if index is not None else ""

    def history(self) -> list[dict[str, str]]:
        """The user and assistant messages before the question, oldest first."""
        index = self._last_user() or 0
        return [
            {"role": m.role, "content": m.text()}
            for m in self.messages[:index]
            if m.role in ("user", "assistant")
        ]

    def system(self) -> str | None:
        """The client's system (and developer) messages, joined; None without any."""
        texts = [m.text().strip() for m in self.messages if m.role in ("system", "developer")]
        return "\n".join(t for t in texts if t) or None

    def chain_input(self) -> dict[str, Any]:
        """The chains' input: question, chat history, citations, system."""
        return {
            "question": self.question(),
            "chat_history": self.history(),
            "citations": self.citations,
            "system": self.system(),
        }

    def llm_options(self) -> dict[str, Any]:
        """What to bind on the answer's chat model for this request."""
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        max_tokens = self.max_tokens or self.max_completion_tokens
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        if self.stop:
            options["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if self.stream and self.stream_options is not None and self.stream_options.include_usage:
            options["stream_usage"] = True
        return options


class Usage(AsyncCallbackHandler):
    """Sums the token usage the endpoint reports over every LLM call of one request
    (the question rewrite and the answer)."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.calls = 0
        self.reported = 0

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.calls += 1
        found = False
        for generations in response.generations:
            for generation in generations:
                meta = getattr(getattr(generation, "message", None), "usage_metadata", None)
                if meta:
                    self.prompt += int(meta.get("input_tokens") or 0)
                    self.completion += int(meta.get("output_tokens") or 0)
                    found = True
        if not found:  # some integrations report it in llm_output only
            token_usage = (response.llm_output or {}).get("token_usage") or {}
            if token_usage:
                self.prompt += int(token_usage.get("prompt_tokens") or 0)
                self.completion += int(token_usage.get("completion_tokens") or 0)
                found = True
        self.reported += found

    def total(self) -> dict[str, int] | None:
        """OpenAI's ``usage`` object; None unless every call reported its usage."""
        if not self.calls or self.reported < self.calls:
            return None
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        }


@router.get("/v1/models")
async def models(state: AppState = Depends(app_state)) -> dict[str, Any]:
    """The one model this server answers as (``server.model_name``)."""
    name = state.settings.server.model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "milvus-rag"}]}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: Request, body: ChatRequest, state: AppState = Depends(app_state)
) -> Any:
    """An answer with ``sources``; streamed as server-sent events with ``stream``."""
    llm, chain = state.answering()
    limits = state.settings.server
    inputs = body.chain_input()
    request.state.questions = [inputs["question"]]
    check_question(inputs["question"], limits.max_question_chars)
    check_history([m["content"] for m in inputs["chat_history"]], inputs["system"], limits)
    options = body.llm_options()
    if options:  # bound for this request only; the rewrite call keeps the defaults
        from milvus_rag.chains import build_rag_chain_with_sources

        chain = build_rag_chain_with_sources(
            state.settings, retriever=state.scoped, llm=llm.bind(**options), condense_llm=llm
        )
    usage = Usage()
    config: Any = {"callbacks": [usage]}
    if body.stream:
        with_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _completion_chunks(
            chain, inputs, config, limits.model_name, usage if with_usage else None
        )
        first = await anext(chunks)  # retrieval and the LLM's first token: errors get a status
        return StreamingResponse(
            _completion_stream(first, chunks, state.redactor), media_type="text/event-stream"
        )
    result = await chain.ainvoke(inputs, config)
    completion = _completion(limits.model_name, result["answer"], result["context"], usage.total())
    return state.redactor.redact_data(completion, credentials=False)


def _sources(context: list[Any]) -> list[dict[str, Any]]:
    from milvus_rag.chains import source_of

    return [source_of(doc) for doc in context]


def _completion(
    model: str, answer: str, context: list[Any], usage: dict[str, int] | None
) -> dict[str, Any]:
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "sources": _sources(context),
    }
    if usage is not None:
        body["usage"] = usage
    return body


def _chunk(
    ident: str, model: str, delta: dict[str, Any], finish: Literal["stop"] | None = None
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _completion_chunks(
    chain: Any, inputs: dict[str, Any], config: Any, model: str, usage: Usage | None
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI chunks: a role chunk carrying ``sources`` (once the LLM answers), content, stop,
    then (when ``usage`` is given) a usage chunk without choices."""
    ident = f"chatcmpl-{uuid.uuid4().hex}"
    first = _chunk(ident, model, {"role": "assistant", "content": ""})
    started = False
    async for part in chain.astream(inputs, config):
        if "context" in part:
            first["sources"] = _sources(part["context"])
        if part.get("answer"):
            if not started:
                started = True
                yield first
            yield _chunk(ident, model, {"content": part["answer"]})
    if not started:
        yield first
    yield _chunk(ident, model, {}, "stop")
    if usage is not None:
        yield {**_chunk(ident, model, {}), "choices": [], "usage": usage.total()}


async def _completion_stream(
    first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]], redactor: Redactor
) -> AsyncIterator[str]:
    """SSE of the chunks; a failure becomes a final ``{"error": ...}`` chunk (secrets
    masked), then ``[DONE]``."""
    yield _sse(redactor.redact_data(first, credentials=False))
    try:
        async for chunk in chunks:
            yield _sse(redactor.redact_data(chunk, credentials=False))
    except Exception as exc:
        # Headers are gone: the error travels in the stream, as OpenAI's API does.
        if isinstance(exc, MilvusRAGError):
            record_error(exc)
            body = error_body(redactor.redact(exc), type(exc).__name__)
            body["error"]["code"] = status_of(exc)
        else:
            server_log.error("stream failed", exc_info=exc)  # not ours: a bug worth its traceback
            body = error_body("internal server error", "server_error")
            body["error"]["code"] = 500
        yield _sse(body)
    yield "data: [DONE]\n\n"
