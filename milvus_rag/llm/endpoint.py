"""``EndpointChatOpenAI``: ``ChatOpenAI`` whose failures are typed one-line errors, held to
``llm.timeout``; every answer records the endpoint that produced it (:class:`EndpointRecorder`)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any, cast

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult, LLMResult
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr, model_validator

from milvus_rag.errors import LLMError, LLMResponseError, LLMTimeoutError
from milvus_rag.llm.deadline import DEADLINE, bounded_client, deadline_passed
from milvus_rag.llm.failures import (
    described_response,
    endpoint_error,
    header_error,
    response_error,
    root_cause,
    shown_url,
)

__all__ = ["EndpointChatOpenAI", "EndpointRecorder"]


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

            http = bounded_client(DefaultHttpxClient(), is_async=False)
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
        self._loop_http = bounded_client(DefaultAsyncHttpxClient(), is_async=True)
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
        return shown_url(str(self.openai_api_base or "https://api.openai.com/v1"))

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
            raise response_error(self._base_url(), described_response(response, exc)) from exc
        if not result.generations:  # ``"choices": []``: content filters answer this way
            raise LLMResponseError(
                f"LLM endpoint {self._base_url()} answered with no choices (no answer at all, "
                "as content filters do); rephrase the question, or check the endpoint's filters"
            )
        for generation in result.generations:
            _mark_endpoint(generation.message, self._base_url())
        return result

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        token = DEADLINE.set(self._deadline())
        try:
            return super()._generate(*args, **kwargs)
        except LLMError:
            raise
        except Exception as exc:
            raise self._mapped(exc) from exc
        finally:
            DEADLINE.reset(token)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        # The deadline is set around each step only: between steps the caller runs.
        deadline = self._deadline()
        chunks = 0
        stream = cast(Generator[ChatGenerationChunk], super()._stream(*args, **kwargs))
        try:
            while True:
                token = DEADLINE.set(deadline)
                try:
                    chunk = next(stream)
                except StopIteration:
                    break
                finally:
                    DEADLINE.reset(token)
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
        token = DEADLINE.set(self._deadline())
        try:
            return await super()._agenerate(*args, **kwargs)
        except LLMError:
            raise
        except Exception as exc:
            raise self._mapped(exc) from exc
        finally:
            DEADLINE.reset(token)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        self._bind_to_running_loop()
        deadline = self._deadline()
        chunks = 0
        stream = cast(AsyncGenerator[ChatGenerationChunk], super()._astream(*args, **kwargs))
        try:
            while True:
                token = DEADLINE.set(deadline)
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                finally:
                    DEADLINE.reset(token)
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
        if deadline_passed(exc):
            return LLMTimeoutError(
                f"LLM endpoint {self._base_url()} did not finish answering within "
                f"{self.request_timeout:g} s (llm.timeout bounds the whole answer); raise "
                "llm.timeout or check the endpoint"
            )
        if isinstance(exc, openai.OpenAIError):
            return self._error(exc)
        if isinstance(exc, json.JSONDecodeError):  # a JSON content type, or an SSE event, not JSON
            return response_error(self._base_url(), f"got invalid JSON: {root_cause(exc)}")
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
