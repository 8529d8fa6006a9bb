"""A real (loopback) OpenAI-compatible HTTP server for tests.

``FakeOpenAIServer`` speaks enough of the OpenAI REST API for
``openai``/``langchain-openai`` clients to exercise their real HTTP code
paths: ``POST /v1/chat/completions`` (plain JSON and SSE streaming) and
``GET /v1/models``.  Tests can script one-shot behaviours (error statuses,
custom headers/bodies, an HTML page answered with 200, a stream failing
midway, delays, a response that drips forever) that are consumed in order, one
per request; ``delay`` gives every other request a fixed latency (load tests,
benchmarks).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

__all__ = ["DEFAULT_ANSWER", "HTML_PAGE", "FakeOpenAIServer", "ScriptedBehaviour", "closed_port"]

DEFAULT_ANSWER = "Milvus stores data in object storage."

#: What a proxy, captive portal or web server root answers instead of the API.
HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>It works!</body></html>\n"
)

_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to access this resource."),
    404: ("invalid_request_error", "not_found", "Not found."),
    408: ("timeout_error", None, "Request timed out."),
    409: ("conflict_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request.",
    ),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded."),
}


def closed_port() -> int:
    """Return a loopback TCP port that (at the time of the call) nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def openai_error(
    message: str, type_: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    """Build an error payload in OpenAI's ``{"error": {...}}`` shape."""
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@dataclass
class ScriptedBehaviour:
    """One-shot behaviour consumed by the next request the server receives.

    ``status`` >= 400 with ``body=None`` yields an OpenAI-shaped error body.
    ``body`` may be a dict/list (sent as JSON), ``str`` or ``bytes`` (sent raw)
    and replaces the normal response body, plain or streamed; ``content_type``
    overrides its Content-Type.  ``delay`` sleeps before answering.
    ``answer`` overrides the assistant text of a success reply.
    ``error_after`` makes a streamed reply send that many content chunks, then
    an in-band ``{"error": ...}`` event, and end.
    ``drip`` makes the reply never end, one piece every ``drip_every`` seconds (so no
    read timeout ever fires): ``"headers"`` drips the status line and headers a byte
    at a time; ``"body"`` sends the headers, then drips the body: a JSON completion a
    byte at a time, or (streamed) one content chunk per piece.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    answer: str | None = None
    content_type: str | None = None
    error_after: int | None = None
    drip: Literal["headers", "body"] | None = None
    drip_every: float = 0.5


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return ""


def _count_tokens(text: str) -> int:
    return len(text.split())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    timeout = 30  # idle keep-alive connections are dropped after this
    server: _Server

    # -- plumbing ---------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep test output quiet

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        owner._record(
            {
                "method": method,
                "path": path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "raw": raw,
            }
        )
        behaviour = owner._next_behaviour()
        try:
            if behaviour.delay > 0 and owner._stopping.wait(behaviour.delay):
                self.close_connection = True
                return
            if behaviour.drip is not None:
                self.close_connection = True
                self._drip(body, behaviour)
                return
            self._respond(method, path, body, behaviour)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (e.g. timeout)

    # -- responses --------------------------------------------------------------
    def _send_bytes(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: dict[str, str]) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_custom(
        self, status: int, body: Any, headers: dict[str, str], content_type: str | None
    ) -> None:
        if isinstance(body, bytes):
            self._send_bytes(status, body, content_type or "application/octet-stream", headers)
        elif isinstance(body, str):
            type_ = content_type or "text/plain; charset=utf-8"
            self._send_bytes(status, body.encode(), type_, headers)
        else:
            self._send_bytes(
                status, json.dumps(body).encode(), content_type or "application/json", headers
            )

    def _respond(self, method: str, path: str, body: Any, behaviour: ScriptedBehaviour) -> None:
        headers = {"x-request-id": f"req_{uuid.uuid4().hex[:16]}", **behaviour.headers}
        if behaviour.body is not None:
            self._send_custom(behaviour.status, behaviour.body, headers, behaviour.content_type)
            return
        if behaviour.status >= 400:
            type_, code, message = _ERROR_KINDS.get(
                behaviour.status,
                ("api_error", None, f"Scripted HTTP {behaviour.status}."),
            )
            self._send_json(behaviour.status, openai_error(message, type_, code), headers)
            return

        owner = self.server.owner
        if method == "POST" and path == "/v1/chat/completions":
            if not isinstance(body, dict):
                err = openai_error("We could not parse the JSON body of your request.")
                self._send_json(400, err, headers)
                return
            answer = behaviour.answer if behaviour.answer is not None else owner.answer
            if body.get("stream"):
                self._stream_chat(body, answer, behaviour, headers)
            else:
                self._send_json(behaviour.status, owner._completion(body, answer), headers)
        elif method == "GET" and path == "/v1/models":
            listing = {
                "object": "list",
                "data": [
                    {
                        "id": owner.model,
                        "object": "model",
                        "created": owner.created,
                        "owned_by": "fake-openai",
                    }
                ],
            }
            self._send_json(behaviour.status, listing, headers)
        else:
            err = openai_error(
                f"Invalid URL ({method} {path})", "invalid_request_error", "unknown_url"
            )
            self._send_json(404, err, headers)

    def _drip(self, body: Any, behaviour: ScriptedBehaviour) -> None:
        """Answer forever, a piece at a time, until the client leaves or the server stops."""
        owner = self.server.owner
        streamed = isinstance(body, dict) and bool(body.get("stream"))
        if behaviour.drip == "headers":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Drip: "
            pieces: Iterator[bytes] = (
                bytes([byte]) for byte in itertools.chain(head, itertools.repeat(ord("a")))
            )
        elif streamed:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = owner._stream_events(body, "drip")
            role, content = events[0], events[1]
            pieces = (
                f"{len(data):x}\r\n".encode() + data + b"\r\n"
                for data in itertools.chain(
                    [b"data: " + role.encode() + b"\n\n"],
                    itertools.repeat(b"data: " + content.encode() + b"\n\n"),
                )
            )
        else:
            payload = json.dumps(owner._completion(body if isinstance(body, dict) else {}, "drip"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(10**9))  # the body never completes
            self.end_headers()
            self.wfile.flush()
            pieces = (
                bytes([byte])
                for byte in itertools.chain(payload.encode(), itertools.repeat(ord(" ")))
            )
        for piece in pieces:
            self.wfile.write(piece)
            self.wfile.flush()
            if owner._stopping.wait(behaviour.drip_every):
                return

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream_chat(
        self,
        body: dict[str, Any],
        answer: str,
        behaviour: ScriptedBehaviour,
        headers: dict[str, str],
    ) -> None:
        owner = self.server.owner
        self.send_response(behaviour.status)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        events = owner._stream_events(body, answer)
        if behaviour.error_after is not None:
            events = events[: 1 + behaviour.error_after]  # the role chunk, then content
            events.append(json.dumps(openai_error(_ERROR_KINDS[500][2], "server_error")))
        for event in events:
            self._write_chunk(b"data: " + event.encode() + b"\n\n")
        if behaviour.error_after is None:
            self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients at once (load tests) are not refused
    owner: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients resetting idle keep-alive connections (or the server's own
        # stop()) are expected; report anything else as usual.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Loopback OpenAI-compatible server running in a daemon thread.

    Use as a context manager or call :meth:`start` / :meth:`stop`.  Every
    request is appended to :attr:`requests` as a dict with ``method``,
    ``path``, ``headers`` (lower-cased keys), ``body`` (parsed JSON or
    ``None``) and ``raw`` (bytes).
    """

    def __init__(
        self,
        answer: str = DEFAULT_ANSWER,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        delay: float = 0.0,
    ) -> None:
        self.answer: str = answer
        #: Seconds every unscripted request waits before it is answered (a fixed latency).
        self.delay = delay
        self.model: str = model
        self.host = host
        self.created = int(time.time())
        self.requests: list[dict[str, Any]] = []
        self._script: collections.deque[ScriptedBehaviour] = collections.deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server((self.host, 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- public helpers ---------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def script(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay: float = 0.0,
        answer: str | None = None,
        content_type: str | None = None,
        error_after: int | None = None,
        drip: Literal["headers", "body"] | None = None,
    ) -> ScriptedBehaviour:
        """Queue a one-shot behaviour for the next unscripted request."""
        behaviour = ScriptedBehaviour(
            status=status,
            headers=dict(headers or {}),
            body=body,
            delay=delay,
            answer=answer,
            content_type=content_type,
            error_after=error_after,
            drip=drip,
        )
        with self._lock:
            self._script.append(behaviour)
        return behaviour

    def script_html(self) -> ScriptedBehaviour:
        """Queue a 200 ``text/html`` page (for plain and streamed calls alike)."""
        return self.script(body=HTML_PAGE, content_type="text/html; charset=utf-8")

    @property
    def pending_scripts(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        """Forget recorded requests and pending scripted behaviours."""
        with self._lock:
            self.requests.clear()
            self._script.clear()

    def chat_requests(self) -> list[dict[str, Any]]:
        """Recorded ``POST /v1/chat/completions`` requests."""
        with self._lock:
            return [r for r in self.requests if r["path"] == "/v1/chat/completions"]

    # -- internals used by the handler ------------------------------------------
    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def _next_behaviour(self) -> ScriptedBehaviour:
        with self._lock:
            return self._script.popleft() if self._script else ScriptedBehaviour(delay=self.delay)

    def _usage(self, body: dict[str, Any], answer: str) -> dict[str, int]:
        messages = body.get("messages") or []
        prompt = sum(
            _count_tokens(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        completion = _count_tokens(answer)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, body: dict[str, Any], answer: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer,
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(body, answer),
        }

    def _stream_events(self, body: dict[str, Any], answer: str) -> list[str]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            payload: dict[str, Any] = {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
            }
            if include_usage:
                payload["usage"] = None
            return json.dumps(payload)

        events = [chunk({"role": "assistant", "content": ""}, None)]
        pieces = re.findall(r"\s*\S+", answer) or ([answer] if answer else [])
        events += [chunk({"content": piece}, None) for piece in pieces]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append(json.dumps({**base, "choices": [], "usage": self._usage(body, answer)}))
        return events
