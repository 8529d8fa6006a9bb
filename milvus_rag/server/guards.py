"""Input limits, checked at the edge before anything runs: body size, questions,
histories, batches and the per-request configuration."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from pydantic import BaseModel, ValidationError

from milvus_rag.server.status import Refused, error_body

if TYPE_CHECKING:
    from milvus_rag.settings import ServerSettings

__all__ = [
    "BodyLimit",
    "check_history",
    "check_question",
    "langserve_limits",
]


def _check_text(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Refused(
            f"{what} is not valid Unicode text (a lone surrogate at character {exc.start}); "
            "send UTF-8 text"
        ) from None


def check_history(texts: list[str], system: str | None, limits: ServerSettings) -> None:
    """The chat history and client system text: valid Unicode, at most max_history_chars."""
    _check_texts(
        "chat history and system messages",
        [*texts, system or ""],
        limits.max_history_chars,
        "server.max_history_chars",
    )


def _check_texts(what: str, texts: list[str], limit: int, setting: str) -> None:
    """At most ``limit`` characters in all, each text valid Unicode."""
    size = sum(len(text) for text in texts)
    if size > limit:
        raise Refused(
            f"{what} are {size} characters; the server accepts at most {limit} ({setting})"
        )
    for text in texts:
        _check_text(f"one of the {what}", text)


def check_question(question: str, limit: int) -> None:
    """A question: not blank, at most ``limit`` characters, valid Unicode."""
    if not question.strip():
        raise Refused("the request holds no question (no user message with text)")
    if len(question) > limit:
        raise Refused(
            f"question is {len(question)} characters; the server accepts at most {limit} "
            "(server.max_question_chars)"
        )
    _check_text("question", question)


def _check_input(value: Any, limits: ServerSettings) -> None:
    """One LangServe input: a question string or a mapping with history and system text."""
    if not isinstance(value, dict):
        if isinstance(value, str):
            check_question(value, limits.max_question_chars)
        return
    question = value.get("question")
    if isinstance(question, str):
        check_question(question, limits.max_question_chars)
    history, system = value.get("chat_history"), value.get("system")
    if history is None and system is None:
        return
    from milvus_rag.chains.history import message_text, messages_from

    try:
        texts = [message_text(m.content) for m in messages_from(history)]
    except (TypeError, ValueError) as exc:
        raise Refused(str(exc)) from None
    if system is not None and not isinstance(system, str):
        raise Refused("system must be a string")
    check_history(texts, system, limits)


def _check_configurable(config: Any, limits: ServerSettings, max_k: int) -> None:
    """``config.configurable``: only k (1..max_k), mode (dense, hybrid) and source (globs)."""
    configurable = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(configurable, dict):
        return
    k, mode, source = (configurable.get(key) for key in ("k", "mode", "source"))
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k):
        raise Refused(f"k must be a whole number from 1 to {max_k} (retrieval.max_k)")
    if mode is not None and mode not in ("dense", "hybrid"):
        raise Refused("mode must be dense or hybrid")
    if source is not None:
        if not isinstance(source, list) or not all(isinstance(p, str) and p for p in source):
            raise Refused("source must be a list of path prefixes or globs")
        _check_texts(
            "source patterns", source, limits.max_question_chars, "server.max_question_chars"
        )


#: LangServe endpoints that run the chain, by the last part of their path.
_RUN_ENDPOINTS = frozenset({"invoke", "batch", "stream", "stream_log", "stream_events"})


async def _json_body(request: Request) -> Any:
    """The request's JSON (cached: LangServe reads the same request); None when it is
    malformed JSON (LangServe answers that itself, 422)."""
    try:
        return await request.json()
    except UnicodeDecodeError:  # LangServe only expects JSON errors (a 500)
        raise Refused("the body is not UTF-8 text", 400) from None
    except RecursionError:
        raise Refused("the JSON body is nested too deeply", 400) from None
    except json.JSONDecodeError:
        return None
    except ValueError:  # Python's limit on integer digits: LangServe would answer 500
        raise Refused(
            f"the JSON body holds an integer of more than {sys.get_int_max_str_digits()} digits"
        ) from None


def _check_inputs(
    inputs: list[Any], batch: bool, limits: ServerSettings, input_schema: type[BaseModel]
) -> None:
    if len(inputs) > limits.max_batch:
        raise Refused(
            f"batch holds {len(inputs)} inputs; the server accepts at most "
            f"{limits.max_batch} (server.max_batch)",
            413,
        )
    for index, value in enumerate(inputs):
        if batch:
            try:
                input_schema.model_validate(value)
            except ValidationError as exc:
                message = exc.errors(include_url=False)[0]["msg"]
                raise Refused(f"inputs[{index}] is not a valid input: {message}") from None
        _check_input(value, limits)


def langserve_limits(
    limits: ServerSettings, max_k: int, input_schema: type[BaseModel]
) -> Callable[[Request], Awaitable[None]]:
    """A dependency checking LangServe requests before any run: inputs (questions,
    histories), the batch size, the per-request configuration, and what LangServe itself
    lets escape as a 500 (a body that is not UTF-8 or nested too deeply, ``"config": null``,
    a batch's invalid input)."""

    async def check(request: Request) -> None:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        if request.method != "POST" or endpoint not in _RUN_ENDPOINTS:
            return
        body = await _json_body(request)
        if not isinstance(body, dict):
            return
        if "config" in body and body["config"] is None:  # LangServe: a TypeError, a 500
            raise Refused('"config" must be an object, or left out')
        inputs = body.get("inputs") if endpoint == "batch" else [body.get("input")]
        if not isinstance(inputs, list):  # LangServe would iterate a string's characters
            raise Refused('"inputs" must be a list of questions')
        request.state.questions = [
            value.get("question") if isinstance(value, dict) else value for value in inputs
        ]
        _check_inputs(inputs, endpoint == "batch", limits, input_schema)
        configs = body.get("config")
        for config in configs if isinstance(configs, list) else [configs]:
            _check_configurable(config, limits, max_k)

    return check


class BodyLimit:
    """ASGI middleware: read the body up front and answer 413 above ``limit`` bytes
    (``upload`` bytes for ``POST /documents``, whose body is counted as it streams)."""

    def __init__(self, app: Any, limit: int, upload: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.upload = upload if upload is not None else limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        uploading = scope.get("method") == "POST" and scope.get("path") == "/documents"
        limit, setting = (
            (self.upload, "server.max_upload_bytes")
            if uploading
            else (self.limit, "server.max_body_bytes")
        )
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, setting)
            return
        if uploading:  # streamed to the handler: counted, never held in memory
            await self.app(scope, self._counting(receive, send, limit, setting), send)
            return
        messages: list[Any] = []
        size = 0
        more = True
        while more:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            more = message.get("more_body", False) and size <= limit
        if size > limit:
            await self._refuse(send, limit, setting)
            return

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _counting(self, receive: Any, send: Any, limit: int, setting: str) -> Any:
        size = 0

        async def counted() -> Any:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > limit:
                raise Refused(f"request body is larger than {limit} bytes ({setting})", 413)
            return message

        return counted

    async def _refuse(self, send: Any, limit: int, setting: str) -> None:
        message = f"request body is larger than {limit} bytes ({setting})"
        body = json.dumps(error_body(message, "invalid_request_error")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
