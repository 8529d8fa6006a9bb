"""The chat model: ``ChatOpenAI`` pointed at an OpenAI-compatible endpoint.

:func:`chat_model_from_settings` builds it from the ``llm`` settings (preset,
base URL, model, key, timeout, retries, fallbacks). :class:`EndpointChatOpenAI` is
``ChatOpenAI`` whose endpoint failures surface as milvus-rag's typed
:class:`~milvus_rag.errors.LLMError` subclasses with one-line messages that name
the base URL and what to change, including an endpoint that answers HTTP 200 with
something that is not a chat completion (:class:`~milvus_rag.errors.LLMResponseError`).
Every answer's ``response_metadata["endpoint"]`` is the base URL that produced it.

With ``llm.fallbacks``, :class:`FallbackChatModel` tries the endpoints in order
(LangChain ``with_fallbacks``): the next one serves when one is unreachable, times
out, rate limits past its retries or fails with a 5xx (:data:`FALLBACK_ERRORS`).

Example:
    .. code-block:: python

        from milvus_rag import load_settings
        from milvus_rag.llm import chat_model_from_settings

        llm = chat_model_from_settings(load_settings(overrides={"llm": {"preset": "local"}}))
        print(llm.invoke("Say hi").content)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr, model_validator

from milvus_rag.errors import (
    ConfigError,
    LLMAuthError,
    LLMConnectionError,
    LLMError,
    LLMNotFoundError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
    MissingAPIKeyError,
)
from milvus_rag.redaction import Redactor

if TYPE_CHECKING:
    from milvus_rag.settings import LLMEndpoint, LLMSettings, Settings

__all__ = [
    "FALLBACK_ERRORS",
    "EndpointChatOpenAI",
    "EndpointProbe",
    "EndpointRecorder",
    "FallbackChatModel",
    "chat_model_from_settings",
    "endpoint_error",
    "header_error",
    "probe_endpoint",
    "require_api_key",
    "response_error",
]

_log = logging.getLogger(__name__)

#: The failures after which the next endpoint of ``llm.fallbacks`` is tried. A rejected
#: key, an unknown model or a response that is not a chat completion are configuration
#: mistakes: they are reported, not hidden behind another endpoint.
FALLBACK_ERRORS: tuple[type[LLMError], ...] = (
    LLMConnectionError,
    LLMTimeoutError,
    LLMRateLimitError,
    LLMServerError,
)

_RETIRED_HINT = "Lepton's hosted *.lepton.run endpoints were retired; set llm.preset (nvidia, openai, local) or llm.base_url"


def endpoint_error(
    exc: BaseException,
    *,
    base_url: str,
    model: str,
    key_env: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
) -> LLMError:
    """Translate an ``openai`` client exception into a typed, one-line :class:`LLMError`."""
    import openai

    where = f"LLM endpoint {base_url}"
    retired = "lepton.run" in base_url
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError(
            f"{where} did not answer within {timeout:g} s; raise llm.timeout or check the endpoint"
            if timeout is not None
            else f"{where} did not answer in time; raise llm.timeout or check the endpoint"
        )
    if isinstance(exc, openai.APIConnectionError):
        hint = _RETIRED_HINT if retired else "check llm.base_url and that the server is running"
        return LLMConnectionError(f"{where} cannot be reached ({_cause(exc)}); {hint}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _detail(exc)
        if status in (401, 403):
            key = f"the key in {key_env}" if key_env else "the API key"
            return LLMAuthError(
                f"{where} rejected {key} (HTTP {status}{detail}); set a valid key"
                + (f" in {key_env}" if key_env else " or set llm.api_key_env")
            )
        if status == 404:
            hint = f"; {_RETIRED_HINT}" if retired else ""
            return LLMNotFoundError(
                f"{where} answered 404 for model {model!r}{detail}: check llm.base_url and llm.model{hint}"
            )
        if status == 429:
            tries = f" after {retries} retries" if retries is not None else ""
            return LLMRateLimitError(
                f"{where} is rate limiting (HTTP 429{tries}){detail}; wait and retry, "
                "or raise llm.max_retries"
            )
        if status >= 500:
            return LLMServerError(
                f"{where} failed with HTTP {status}{detail}; try again later or use another endpoint"
            )
        return LLMError(f"{where} refused the request (HTTP {status}{detail})")
    return LLMError(f"{where} failed ({type(exc).__name__}: {_cause(exc)})")


def header_error(exc: BaseException, key_env: str | None) -> ConfigError | None:
    """The one-line error for a key that cannot be sent in an HTTP header, or None.

    httpx refuses a header holding a line break (h11's ``Illegal header value b'Bearer
    ...'``, which quotes the key) or a non-ASCII character (``UnicodeEncodeError``).
    Settings never let such a key through; a key given in code may. The message names
    the variable, never the key.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # the exception, then what caused it
        if seen is None:
            return None
        # httpx's, httpx2's, httpcore's and h11's LocalProtocolError alike
        protocol = any(cls.__name__ == "LocalProtocolError" for cls in type(seen).__mro__)
        refused = isinstance(seen, UnicodeEncodeError) or (
            protocol and "header" in str(seen).lower()
        )
        if refused:
            where = f"the key in {key_env}" if key_env else "the API key (or a request header)"
            return ConfigError(
                f"{where} cannot be sent in an HTTP header: it holds a line break, a control "
                "or a non-ASCII character; set it again as printable ASCII text"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def response_error(base_url: str, what: str) -> LLMResponseError:
    """The one-line error for an endpoint that answered with something that is not a chat completion.

    ``what`` says what came back instead, e.g. ``"an HTML page"``.
    """
    return LLMResponseError(
        f"LLM endpoint {base_url} answered, but not with an OpenAI-compatible chat completion "
        f"({what}); check llm.base_url: it must be the API root, usually ending in /v1"
    )


def _described(body: Any, exc: BaseException) -> str:
    """What a non-completion response held, in a few words."""
    if isinstance(body, str):
        text = body.strip()
        if text.startswith("<"):
            return "got an HTML page"
        first = text.splitlines()[0][:80] if text else ""
        return f"got text: {first!r}" if first else "got an empty body"
    error = body.get("error") if isinstance(body, dict) else getattr(body, "error", None)
    if isinstance(error, dict):
        error = error.get("message")
    if error:
        return "it reports an error: " + str(error).strip().splitlines()[0][:160]
    if isinstance(exc, (KeyError, TypeError)) and "choices" in str(exc):
        return "got JSON without choices"
    return f"{type(exc).__name__}: {_cause(exc)}"


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else None
    if not message:
        return ""
    return ": " + str(message).strip().splitlines()[0][:160]


def _shown(url: str) -> str:
    """``url`` for messages: the password of its user info masked (``user:***@``)."""
    return Redactor().redact(url)


def _cause(exc: BaseException) -> str:
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(root).strip().splitlines()
    return (text[0] if text else type(root).__name__)[:160]


#: When the current chat model call must end (``time.monotonic()``), or None: set by
#: :class:`EndpointChatOpenAI` around each step of a call, read by every socket
#: operation of its HTTP clients (:func:`_bounded_client`).
_DEADLINE: ContextVar[float | None] = ContextVar("milvus_rag_llm_deadline", default=None)


class _DeadlinePassed(Exception):
    """The call's ``llm.timeout`` is over (raised by a socket operation; never retried)."""


def _left(timeout: float | None) -> float | None:
    """``timeout`` cut to what is left of the current call's deadline."""
    deadline = _DEADLINE.get()
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


def _passed(exc: BaseException) -> bool:
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
    deadline = _DEADLINE.get()
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


def _bounded_client(client: Any, is_async: bool) -> Any:
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


class EndpointChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` raising :class:`~milvus_rag.errors.LLMError` subclasses.

    Behaves exactly like ``ChatOpenAI`` (same HTTP path, retries, streaming);
    only the exceptions differ: each names the endpoint and the setting to fix.

    Example:
        .. code-block:: python

            from milvus_rag.llm import EndpointChatOpenAI

            llm = EndpointChatOpenAI(
                base_url="http://localhost:11434/v1", api_key="unused", model="llama3.2"
            )
    """

    key_env: str | None = None
    """Name of the environment variable the key came from (for messages only)."""

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """No: langchain-core's ``load`` accepts only classes on its allowlist, and a
        dump read back as a plain ``ChatOpenAI`` would lose the typed errors. Rebuild
        it from settings (:func:`chat_model_from_settings`) instead."""
        return False

    _loop: Any = PrivateAttr(default=None)
    _loop_http: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _bounded_sync_client(self) -> EndpointChatOpenAI:
        """The sync client's sockets held to each call's deadline (``llm.timeout``); the
        async one gets its pool per event loop (:meth:`_bind_to_running_loop`)."""
        if self.http_client is None and self.root_client is not None:
            from openai import DefaultHttpxClient

            http = _bounded_client(DefaultHttpxClient(), is_async=False)
            self.root_client = self.root_client.copy(http_client=http)
            self.client = self.root_client.chat.completions
        return self

    def _deadline(self) -> float | None:
        """When a call starting now must end: ``llm.timeout`` covers connecting, the
        headers and the whole body, streamed or not, retries included."""
        timeout = self.request_timeout
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            return time.monotonic() + float(timeout)
        return None

    def _bind_to_running_loop(self) -> None:
        """Give the async client a connection pool of the running event loop.

        An httpx pool keeps connections bound to the loop that opened them, so a
        second ``asyncio.run`` (or a test's new loop) would fail with "Event loop
        is closed". One pool per loop, made on first use in that loop.
        """
        import asyncio
        import weakref

        from openai import DefaultAsyncHttpxClient

        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop() is loop:
            return
        self._loop_http = _bounded_client(DefaultAsyncHttpxClient(), is_async=True)
        self.root_async_client = self.root_async_client.copy(http_client=self._loop_http)
        self.async_client = self.root_async_client.chat.completions
        self._loop = weakref.ref(loop)

    async def aclose(self) -> None:
        """Close the connection pool of the current event loop (e.g. at server shutdown)."""
        if self._loop_http is not None:
            await self._loop_http.aclose()
            self._loop, self._loop_http = None, None

    def _base_url(self) -> str:
        """The base URL for messages and ``response_metadata``: a password in it masked."""
        return _shown(str(self.openai_api_base or "https://api.openai.com/v1"))

    def _error(self, exc: BaseException) -> LLMError:
        return endpoint_error(
            exc,
            base_url=self._base_url(),
            model=self.model_name,
            key_env=self.key_env,
            timeout=self.request_timeout
            if isinstance(self.request_timeout, (int, float))
            else None,
            retries=self.max_retries,
        )

    def _create_chat_result(
        self, response: Any, generation_info: dict[str, Any] | None = None
    ) -> ChatResult:
        # langchain-openai parses the body here: an HTML page arrives as a str, a JSON
        # object without ``choices`` as a dict; either fails with a builtin exception.
        try:
            result = super()._create_chat_result(response, generation_info)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise response_error(self._base_url(), _described(response, exc)) from exc
        if not result.generations:  # ``"choices": []``: content filters answer this way
            raise LLMResponseError(
                f"LLM endpoint {self._base_url()} answered with no choices (no answer at all, "
                "as content filters do); rephrase the question, or check the endpoint's filters"
            )
        for generation in result.generations:
            _mark_endpoint(generation.message, self._base_url())
        return result

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        token = _DEADLINE.set(self._deadline())
        try:
            return super()._generate(*args, **kwargs)
        except LLMError:
            raise
        except Exception as exc:
            raise self._mapped(exc) from exc
        finally:
            _DEADLINE.reset(token)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        # The deadline is set around each step only: between steps the caller runs.
        deadline = self._deadline()
        chunks = 0
        stream = cast(Generator[ChatGenerationChunk], super()._stream(*args, **kwargs))
        try:
            while True:
                token = _DEADLINE.set(deadline)
                try:
                    chunk = next(stream)
                except StopIteration:
                    break
                finally:
                    _DEADLINE.reset(token)
                if not chunks:
                    _mark_endpoint(chunk.message, self._base_url())
                chunks += 1
                yield chunk
        except LLMError:
            raise
        except Exception as exc:
            raise self._mapped(exc) from exc
        finally:
            stream.close()
        if not chunks:
            raise self._empty_stream()

    async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
        self._bind_to_running_loop()
        token = _DEADLINE.set(self._deadline())
        try:
            return await super()._agenerate(*args, **kwargs)
        except LLMError:
            raise
        except Exception as exc:
            raise self._mapped(exc) from exc
        finally:
            _DEADLINE.reset(token)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        self._bind_to_running_loop()
        deadline = self._deadline()
        chunks = 0
        stream = cast(AsyncGenerator[ChatGenerationChunk], super()._astream(*args, **kwargs))
        try:
            while True:
                token = _DEADLINE.set(deadline)
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                finally:
                    _DEADLINE.reset(token)
                if not chunks:
                    _mark_endpoint(chunk.message, self._base_url())
                chunks += 1
                yield chunk
        except LLMError:
            raise
        except Exception as exc:
            raise self._mapped(exc) from exc
        finally:
            await stream.aclose()
        if not chunks:
            raise self._empty_stream()

    def _empty_stream(self) -> LLMResponseError:
        # An HTML page (or any body without ``data:`` events) parses as an empty stream.
        return response_error(
            self._base_url(),
            "the stream held no chat completion chunks: no choices, as content filters answer, "
            "or not an OpenAI stream",
        )

    def _mapped(self, exc: Exception) -> Exception:
        import openai

        refused = header_error(exc, self.key_env)
        if refused is not None:
            return refused
        if _passed(exc):
            return LLMTimeoutError(
                f"LLM endpoint {self._base_url()} did not finish answering within "
                f"{self.request_timeout:g} s (llm.timeout bounds the whole answer); raise "
                "llm.timeout or check the endpoint"
            )
        if isinstance(exc, openai.OpenAIError):
            return self._error(exc)
        if isinstance(exc, json.JSONDecodeError):  # a JSON content type, or an SSE event, not JSON
            return response_error(self._base_url(), f"got invalid JSON: {_cause(exc)}")
        return exc


def _mark_endpoint(message: BaseMessage, base_url: str) -> None:
    """Record which endpoint produced ``message`` (once per answer: streamed chunks merge)."""
    message.response_metadata = {**message.response_metadata, "endpoint": base_url}


class EndpointRecorder(BaseCallbackHandler):
    """A callback remembering which endpoint produced the last answer.

    Pass it in a run's ``callbacks``; afterwards :attr:`base_url` is the answer's
    ``response_metadata["endpoint"]`` (None when no chat model answered).

    Example:
        .. code-block:: python

            recorder = EndpointRecorder()
            chain.invoke("How is data stored in milvus?", {"callbacks": [recorder]})
            print(recorder.base_url)
    """

    def __init__(self) -> None:
        self.base_url: str | None = None

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                endpoint = message.response_metadata.get("endpoint") if message else None
                if endpoint:
                    self.base_url = str(endpoint)


class _ErrorLog(BaseCallbackHandler):
    """Collects the errors of the endpoints tried, for the message when all of them fail."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)


class FallbackChatModel(BaseChatModel):
    """Chat models tried in order, as one chat model (LangChain ``with_fallbacks``).

    The next model serves when one raises one of :data:`FALLBACK_ERRORS`; other errors
    are raised at once. When every model fails, the error names each endpoint's
    failure. A fallback that answers is logged as a warning, and the answer's
    ``response_metadata["endpoint"]`` says which endpoint it was.

    Example:
        .. code-block:: python

            from milvus_rag.llm import EndpointChatOpenAI, FallbackChatModel

            llm = FallbackChatModel(
                models=[
                    EndpointChatOpenAI(base_url="https://api.example/v1", api_key="k", model="m"),
                    EndpointChatOpenAI(base_url="http://localhost:11434/v1", api_key="-", model="l"),
                ]
            )
    """

    models: list[BaseChatModel]

    @property
    def _llm_type(self) -> str:
        return "milvus-rag-fallbacks"

    def _runnable(self) -> Runnable[Any, BaseMessage]:
        first, *rest = self.models
        return first.with_fallbacks(rest, exceptions_to_handle=FALLBACK_ERRORS)

    @staticmethod
    def _config() -> tuple[RunnableConfig, _ErrorLog]:
        # The endpoints run as an implementation detail of this model's own run: their
        # callbacks are not the caller's, so streamed tokens are reported once.
        log = _ErrorLog()
        return {"callbacks": [log]}, log

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config, log = self._config()
        try:
            message = self._runnable().invoke(messages, config, stop=stop, **kwargs)
        except FALLBACK_ERRORS as exc:
            raise _all_failed(exc, log) from exc
        _note_fallback(log, message)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config, log = self._config()
        try:
            message = await self._runnable().ainvoke(messages, config, stop=stop, **kwargs)
        except FALLBACK_ERRORS as exc:
            raise _all_failed(exc, log) from exc
        _note_fallback(log, message)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        config, log = self._config()
        first = True
        try:
            for chunk in self._runnable().stream(messages, config, stop=stop, **kwargs):
                if first:
                    _note_fallback(log, chunk)
                    first = False
                yield ChatGenerationChunk(message=chunk)  # type: ignore[arg-type]
        except FALLBACK_ERRORS as exc:
            if not first:
                raise  # the answer had started: that endpoint's own error
            raise _all_failed(exc, log) from exc

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        config, log = self._config()
        first = True
        try:
            async for chunk in self._runnable().astream(messages, config, stop=stop, **kwargs):
                if first:
                    _note_fallback(log, chunk)
                    first = False
                yield ChatGenerationChunk(message=chunk)  # type: ignore[arg-type]
        except FALLBACK_ERRORS as exc:
            if not first:
                raise
            raise _all_failed(exc, log) from exc


def _all_failed(first: LLMError, log: _ErrorLog) -> LLMError:
    """``first`` (the primary's error), naming every fallback's failure too."""
    others = [str(e) for e in log.errors if e is not first and isinstance(e, LLMError)]
    if not others:
        return first
    return type(first)(f"{first}; fallbacks failed too: " + "; ".join(others))


def _note_fallback(log: _ErrorLog, message: BaseMessage) -> None:
    if log.errors:
        endpoint = message.response_metadata.get("endpoint", "a fallback endpoint")
        _log.warning("%s; answered by the fallback %s", log.errors[0], endpoint)


def require_api_key(llm: LLMSettings | LLMEndpoint) -> str:
    """The API key to send; raises :class:`MissingAPIKeyError` when it is needed but unset."""
    if llm.api_key is not None:
        return llm.api_key.get_secret_value()
    if llm.api_key_env:
        raise MissingAPIKeyError(
            f"no API key for {_shown(str(llm.base_url))}: set the environment variable {llm.api_key_env} "
            "(llm.api_key_env), or choose another llm.preset"
        )
    return "not-needed"


def chat_model_from_settings(settings: Settings | LLMSettings, **overrides: Any) -> BaseChatModel:
    """Build the chat model from settings. Touches no network.

    Returns an :class:`EndpointChatOpenAI`, or a :class:`FallbackChatModel` over one
    per endpoint when ``llm.fallbacks`` is set (``overrides`` apply to each).

    Raises:
        MissingAPIKeyError: an endpoint needs a key and its variable is unset.
    """
    llm: LLMSettings = settings.llm if hasattr(settings, "llm") else settings  # type: ignore[assignment]
    models = [_endpoint_model(llm, endpoint, overrides) for endpoint in llm.endpoints()]
    return models[0] if len(models) == 1 else FallbackChatModel(models=models)


def _endpoint_model(
    llm: LLMSettings, endpoint: LLMSettings | LLMEndpoint, overrides: dict[str, Any]
) -> EndpointChatOpenAI:
    options: dict[str, Any] = {
        "base_url": endpoint.base_url,
        "model": endpoint.model,
        "api_key": require_api_key(endpoint),
        "timeout": llm.timeout,
        "max_retries": llm.max_retries,
        "key_env": endpoint.api_key_env,
    }
    if llm.temperature is not None:
        options["temperature"] = llm.temperature
    options.update(overrides)
    return EndpointChatOpenAI(**options)


@dataclass(frozen=True)
class EndpointProbe:
    """What one cheap request to an endpoint said: ``ok``, a message and, if not ok, the fix."""

    ok: bool
    message: str
    fix: str | None = None


def probe_endpoint(endpoint: LLMSettings | LLMEndpoint, timeout: float) -> EndpointProbe:
    """``GET {base_url}/models`` with the key: reachable, key accepted, model listed.

    Used by ``milvus-rag doctor`` and the server's ``/ready``. Never raises.
    """
    import httpx

    url = str(endpoint.base_url).rstrip("/")
    base = _shown(url)  # for messages
    if endpoint.api_key is None and endpoint.api_key_env:
        return EndpointProbe(
            False,
            f"no API key for {base}: {endpoint.api_key_env} is not set",
            f"export {endpoint.api_key_env}=..., or choose another llm.preset",
        )
    headers = {}
    if endpoint.api_key is not None:
        headers["Authorization"] = f"Bearer {endpoint.api_key.get_secret_value()}"
    unreachable_fix = (
        "Lepton's hosted *.lepton.run endpoints were retired: set llm.preset "
        "(nvidia, openai, local) or llm.base_url"
        if "lepton.run" in base
        else "check llm.base_url and that the server runs, or add llm.fallbacks"
    )
    try:
        response = httpx.get(f"{url}/models", headers=headers, timeout=timeout)
    except (httpx.LocalProtocolError, UnicodeEncodeError) as exc:
        refused = header_error(exc, endpoint.api_key_env)
        if refused is None:
            raise
        return EndpointProbe(False, str(refused), f"set {endpoint.api_key_env or 'the key'} again")
    except httpx.TimeoutException:
        return EndpointProbe(False, f"{base} did not answer within {timeout:g} s", unreachable_fix)
    except httpx.HTTPError as exc:
        return EndpointProbe(False, f"{base} cannot be reached ({_cause(exc)})", unreachable_fix)
    status = response.status_code
    if status in (401, 403):
        key = endpoint.api_key_env or "llm.api_key_env"
        return EndpointProbe(
            False, f"{base} rejected the key in {key} (HTTP {status})", f"set a valid key in {key}"
        )
    if status == 404:
        return EndpointProbe(
            True, f"{base} is reachable (it has no /models route: key not verified)"
        )
    if status >= 400:
        return EndpointProbe(
            False, f"{base} answered HTTP {status} to GET /models", unreachable_fix
        )
    listed = _model_ids(response)
    note = (
        f"; model {endpoint.model} is not in its /models list"
        if listed and endpoint.model not in listed
        else ""
    )
    return EndpointProbe(True, f"{base} is reachable and accepts the key{note}")


def _model_ids(response: Any) -> set[str]:
    try:
        data = response.json().get("data")
        return {str(item["id"]) for item in data if isinstance(item, dict) and "id" in item}
    except (ValueError, AttributeError, TypeError):
        return set()
