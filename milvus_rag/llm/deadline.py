"""``llm.timeout`` over a whole call: a deadline every socket operation of the chat model's
HTTP clients ends by (connecting, the headers, the whole body, streamed or not, retries
included)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

__all__ = ["DEADLINE", "bounded_client", "deadline_passed"]


#: When the current chat model call must end (``time.monotonic()``), or None: set by
#: :class:`EndpointChatOpenAI` around each step of a call, read by every socket
#: operation of its HTTP clients (:func:`bounded_client`).
DEADLINE: ContextVar[float | None] = ContextVar("milvus_rag_llm_deadline", default=None)


class _DeadlinePassed(Exception):
    """The call's ``llm.timeout`` is over (raised by a socket operation; never retried)."""


def _left(timeout: float | None) -> float | None:
    """``timeout`` cut to what is left of the current call's deadline."""
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise _DeadlinePassed
    return left if timeout is None else min(timeout, left)


def _within(op: Callable[..., Any], *args: Any, timeout: float | None, **kwargs: Any) -> Any:
    """``op(*args, timeout=...)`` ending by the current call's deadline."""
    try:
        return op(*args, timeout=_left(timeout), **kwargs)
    except _DeadlinePassed:
        raise
    except Exception as exc:
        if _over():
            raise _DeadlinePassed from exc
        raise


async def _awithin(
    op: Callable[..., Awaitable[Any]], *args: Any, timeout: float | None, **kwargs: Any
) -> Any:
    """The async twin of :func:`_within`."""
    try:
        return await op(*args, timeout=_left(timeout), **kwargs)
    except _DeadlinePassed:
        raise
    except Exception as exc:
        if _over():
            raise _DeadlinePassed from exc
        raise


def deadline_passed(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, the end of a call's deadline."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, _DeadlinePassed):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _over() -> bool:
    deadline = DEADLINE.get()
    return deadline is not None and time.monotonic() >= deadline


class _BoundedStream:
    """A network stream (httpcore's interface) whose reads and writes end by the deadline."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return bytes(_within(self._stream.read, max_bytes, timeout=timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _within(self._stream.write, buffer, timeout=timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> _BoundedStream:
        tls = _within(self._stream.start_tls, ssl_context, server_hostname, timeout=timeout)
        return _BoundedStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncBoundedStream:
    """The async twin of :class:`_BoundedStream`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return bytes(await _awithin(self._stream.read, max_bytes, timeout=timeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await _awithin(self._stream.write, buffer, timeout=timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> _AsyncBoundedStream:
        tls = await _awithin(self._stream.start_tls, ssl_context, server_hostname, timeout=timeout)
        return _AsyncBoundedStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _BoundedBackend:
    """httpcore's sync network backend, opening :class:`_BoundedStream` streams."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return _BoundedStream(_within(self._backend.connect_tcp, *args, timeout=timeout, **kwargs))

    def connect_unix_socket(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        stream = _within(self._backend.connect_unix_socket, *args, timeout=timeout, **kwargs)
        return _BoundedStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncBoundedBackend:
    """httpcore's async network backend, opening :class:`_AsyncBoundedStream` streams."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    async def connect_tcp(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        stream = await _awithin(self._backend.connect_tcp, *args, timeout=timeout, **kwargs)
        return _AsyncBoundedStream(stream)

    async def connect_unix_socket(
        self, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        stream = await _awithin(self._backend.connect_unix_socket, *args, timeout=timeout, **kwargs)
        return _AsyncBoundedStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def bounded_client(client: Any, is_async: bool) -> Any:
    """``client`` (an httpx client) with every socket operation held to the call's deadline.

    The connection pools of its transports (the default one and those of the proxies it
    found in the environment) open their connections through :class:`_BoundedBackend`.
    """
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if (
            pool is not None
            and backend is not None
            and not isinstance(backend, (_BoundedBackend, _AsyncBoundedBackend))
        ):
            pool._network_backend = (_AsyncBoundedBackend if is_async else _BoundedBackend)(backend)
    return client
