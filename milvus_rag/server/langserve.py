"""The LangServe adaptation: ``/rag``, ``/rag-with-sources`` and ``/retrieve`` (invoke,
batch, stream, stream_log, stream_events, schemas and the playground), with the edge's
checks before any run, streams that start once the LLM answers, and secrets masked."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from langchain_core.callbacks import AsyncCallbackHandler
from langserve import add_routes

from milvus_rag.errors import MilvusRAGError
from milvus_rag.redaction import Redactor
from milvus_rag.server.auth import require_key
from milvus_rag.server.guards import langserve_limits
from milvus_rag.server.logs import server_log
from milvus_rag.server.state import AppState, app_state
from milvus_rag.server.status import status_of
from milvus_rag.telemetry import record_error

__all__ = ["answers_off", "chain_router"]


def chain_router(state: AppState) -> APIRouter:
    """The LangServe routes of the app's chains (``/rag`` and ``/rag-with-sources`` answer
    503 without the LLM's key), each behind the key and the edge's checks."""
    from milvus_rag.chains import build_rag_chain, build_retrieval_chain

    router = APIRouter(route_class=_langserve_route_class(state.redactor))
    settings = state.settings
    auth = [Depends(require_key)]

    def checks(chain: Any) -> list[Any]:
        limits = langserve_limits(settings.server, settings.retrieval.max_k, chain.input_schema)
        return [*auth, Depends(limits)]

    routes: list[tuple[str, Any]] = []
    if state.llm is not None and state.sources_chain is not None:
        answer_chain = build_rag_chain(settings, retriever=state.scoped, llm=state.llm)
        routes = [("/rag", answer_chain), ("/rag-with-sources", state.sources_chain)]
    else:
        for path in ("/rag", "/rag-with-sources"):
            router.add_api_route(
                f"{path}/{{rest:path}}",
                answers_off,
                methods=["GET", "HEAD", "POST"],
                dependencies=auth,
                include_in_schema=False,
                response_model=None,
            )
    for path, chain in routes:
        add_routes(
            router,
            chain,
            path=path,
            dependencies=checks(chain),
            per_req_config_modifier=_watch_llm,
            # The /c/{config_hash}/... variants would carry configuration past the checks.
            disabled_endpoints=["config_hashes"],
        )
    retrieve_chain = build_retrieval_chain(retriever=state.scoped)
    add_routes(
        router,
        retrieve_chain,
        path="/retrieve",
        dependencies=checks(retrieve_chain),
        disabled_endpoints=["config_hashes"],
    )
    return router


async def answers_off(state: AppState = Depends(app_state)) -> None:
    """The answer routes without the LLM's key: 503 naming the variable."""
    state.answering()


def _rewriting(tags: list[str] | None) -> bool:
    from milvus_rag.chains import CONDENSE_TAG

    return CONDENSE_TAG in (tags or [])


class _LLMStarted(AsyncCallbackHandler):
    """Sets :attr:`started` once the chat model has produced its first answer token (or
    answered); the question-rewrite call does not count."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def on_llm_new_token(
        self, *args: Any, tags: list[str] | None = None, **kwargs: Any
    ) -> None:
        if not _rewriting(tags):
            self.started.set()

    async def on_llm_end(self, *args: Any, tags: list[str] | None = None, **kwargs: Any) -> None:
        if not _rewriting(tags):
            self.started.set()


def _watch_llm(config: dict[str, Any], request: Request) -> dict[str, Any]:
    """LangServe's per-request hook: note on the request when the LLM starts answering."""
    watcher = _LLMStarted()
    request.state.llm_started = watcher.started
    return {**config, "callbacks": [*(config.get("callbacks") or []), watcher]}


def _langserve_route_class(redactor: Redactor) -> type[Any]:
    """FastAPI routes whose LangServe event streams start only once the LLM answers (their
    error events with secrets masked), and whose playground pages get schemas the
    playground can render."""
    from sse_starlette import EventSourceResponse

    class LangServeRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            playground = "/playground/" in self.path

            async def route(request: Request) -> Response:
                if playground:
                    response = await _playground_file(handler, request)
                    if response.media_type == "text/html":
                        return _playground_page(response)
                    return response
                response = await handler(request)
                if isinstance(response, EventSourceResponse):
                    started = getattr(request.state, "llm_started", None)
                    response.body_iterator = await _started(
                        _redacted_events(response.body_iterator, redactor), started, redactor
                    )
                    return response
                return _redacted_body(response, redactor)

            return route

    return LangServeRoute


#: The lines of LangServe's playground page that hand it the runnable's JSON schemas.
_PLAYGROUND_SCHEMA = re.compile(r"^(\s*window\.[A-Z_]+_SCHEMA = )(.*);$", re.MULTILINE)


def _playground_page(response: Response) -> Response:
    """The playground page with optional fields as plain ones: its form library stops at
    pydantic's ``anyOf: [..., {"type": "null"}]`` (a blank page)."""
    from fastapi.responses import HTMLResponse

    def simpler(match: re.Match[str]) -> str:
        try:
            schema = json.loads(match.group(2))
        except ValueError:
            return match.group(0)
        return f"{match.group(1)}{json.dumps(_without_null(schema))};"

    page = bytes(response.body).decode("utf-8")
    return HTMLResponse(_PLAYGROUND_SCHEMA.sub(simpler, page), status_code=response.status_code)


def _without_null(schema: Any) -> Any:
    """A JSON schema whose ``anyOf: [X, {"type": "null"}]`` are ``X`` (null defaults dropped)."""
    if isinstance(schema, list):
        return [_without_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _without_null(value) for key, value in schema.items()}
    options = out.get("anyOf")
    if isinstance(options, list):
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) == 1 and isinstance(kept[0], dict):
            del out["anyOf"]
            out = {**kept[0], **out}
        elif len(kept) < len(options):
            out["anyOf"] = kept
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


async def _playground_file(
    handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
) -> Response:
    """A file of LangServe's playground; a path it cannot serve is a JSON 404.

    LangServe opens the requested path itself: a folder, a NUL byte or a name too
    long would escape as a 500, a missing file is a plain-text 404.
    """
    from starlette.exceptions import HTTPException

    try:
        response = await handler(request)
    except (OSError, ValueError):
        raise HTTPException(status_code=404, detail="Not Found") from None
    if response.status_code == 404:
        raise HTTPException(status_code=404, detail="Not Found")
    return response


async def _started(
    events: Any, started: asyncio.Event | None, redactor: Redactor
) -> AsyncIterator[Any]:
    """Hold LangServe's events until the LLM answers; return the whole stream.

    LangServe turns any failure into a ``500 Internal Server Error`` event, then
    re-raises (an aborted response and an ASGI traceback). A typed error before the
    stream starts is raised here (its status and JSON body); later, it becomes one
    error event with its status and message, and the stream ends cleanly.
    """
    held: list[Any] = []
    async for event in events:
        if _is_error(event):
            error = await _raised(events)
            if error is None:
                held.append(event)
                break
            raise error
        held.append(event)
        if started is None or started.is_set():
            break
    return _resumed(held, events, redactor)


async def _resumed(
    held: list[Any], events: AsyncIterator[Any], redactor: Redactor
) -> AsyncIterator[Any]:
    for event in held:
        yield event
    async for event in events:
        if _is_error(event):
            yield _error_event(await _raised(events), event, redactor)
            return
        yield event


async def _redacted_events(events: Any, redactor: Redactor) -> AsyncIterator[Any]:
    """LangServe's events with every known secret masked in their data (run metadata may
    name the endpoint, and so on); error events pass as they are (see :func:`_resumed`)."""
    async for event in events:
        if isinstance(event, dict) and isinstance(event.get("data"), str) and not _is_error(event):
            event = {**event, "data": redactor.redact(event["data"], credentials=False)}
        yield event


def _redacted_body(response: Response, redactor: Redactor) -> Response:
    """``response`` with every known secret masked in its body (a LangServe JSON answer)."""
    from fastapi.responses import Response as Plain

    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not body:
        return response
    text = body.decode("utf-8", "replace")
    masked = redactor.redact(text, credentials=False)
    if masked == text:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Plain(masked, response.status_code, headers, response.media_type)


def _is_error(event: Any) -> bool:
    return isinstance(event, dict) and event.get("event") == "error"


async def _raised(events: AsyncIterator[Any]) -> Exception | None:
    """The exception LangServe re-raises after its error event."""
    try:
        await anext(events)
    except StopAsyncIteration:
        return None
    except Exception as exc:
        return exc
    return None


def _error_event(
    error: Exception | None, generic: dict[str, Any], redactor: Redactor
) -> dict[str, Any]:
    if isinstance(error, MilvusRAGError):
        record_error(error)
        data = {"status_code": status_of(error), "message": redactor.redact(error)}
        return {"event": "error", "data": json.dumps(data)}
    if error is not None:
        server_log.error("stream failed", exc_info=error)  # not ours: a bug worth its traceback
    return generic
