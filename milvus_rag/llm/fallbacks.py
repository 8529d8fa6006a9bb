"""``llm.fallbacks``: chat models tried in order, as one chat model (LangChain ``with_fallbacks``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig

from milvus_rag.errors import (
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
)

__all__ = ["FALLBACK_ERRORS", "FallbackChatModel"]

# The name the package has always logged on (logging filters match it exactly).
_log = logging.getLogger("milvus_rag.llm")


#: The failures after which the next endpoint of ``llm.fallbacks`` is tried. A rejected
#: key, an unknown model or a response that is not a chat completion are configuration
#: mistakes: they are reported, not hidden behind another endpoint.
FALLBACK_ERRORS: tuple[type[LLMError], ...] = (
    LLMConnectionError,
    LLMTimeoutError,
    LLMRateLimitError,
    LLMServerError,
)


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
