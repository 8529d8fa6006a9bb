"""The server's loggers and its access log (an ASGI middleware: one line per request).

Imports nothing of FastAPI (``serve`` reaches :data:`access_log` before building an app).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["AccessLog", "access_log", "loggable", "server_log"]

#: Failed authentications and failures that are not ours (a bug worth its traceback).
server_log = logging.getLogger("milvus_rag.server")
#: One line per request: method, route, status, latency (and the question when asked).
access_log = logging.getLogger("milvus_rag.server.access")


def loggable(text: str) -> str:
    """``text`` on one log line: control characters escaped, at most 200 characters."""
    text = text[:200]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessLog:
    """ASGI middleware: one :data:`access_log` line per HTTP request, once it is answered.

    Logs the method, the route's path template (the raw path when no route matched;
    never the query string), the status and the latency in milliseconds; with
    ``log_questions``, the question(s) the request asked; the name of the key it came
    with (``key=NAME``, never the key). Headers and cookies are never logged.
    """

    def __init__(self, app: Any, log_questions: bool) -> None:
        self.app = app
        self.log_questions = log_questions

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._log(scope, status, (time.perf_counter() - start) * 1000)

    def _log(self, scope: Any, status: int, latency_ms: float) -> None:
        route = getattr(scope.get("route"), "path", None) or loggable(scope.get("path", ""))
        method = scope.get("method", "")
        asked = ""
        questions = (scope.get("state") or {}).get("questions") if self.log_questions else None
        if questions:
            texts = [q for q in questions if isinstance(q, str)]
            asked = " question=" + json.dumps(texts[0] if len(texts) == 1 else texts)
        # The key's name (never the key), once a request was let in with one.
        name = (scope.get("state") or {}).get("key_name")
        who = f" key={name}" if name else ""
        access_log.info(
            "%s %s %d %.1fms%s%s",
            method,
            route,
            status,
            latency_ms,
            who,
            asked,
            extra={
                "method": method,
                "route": route,
                "status": status,
                "latency_ms": latency_ms,
                "key_name": name,
            },
        )
