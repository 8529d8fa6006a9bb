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

The package: :mod:`~milvus_rag.llm.endpoint` (``EndpointChatOpenAI``, which endpoint
answered), :mod:`~milvus_rag.llm.failures` (endpoint failures as typed one-line errors),
:mod:`~milvus_rag.llm.deadline` (``llm.timeout`` over a whole call),
:mod:`~milvus_rag.llm.fallbacks` (``FallbackChatModel``), :mod:`~milvus_rag.llm.factory`
(:func:`chat_model_from_settings`) and :mod:`~milvus_rag.llm.probe` (:func:`probe_endpoint`).
"""

from __future__ import annotations

from milvus_rag.llm.endpoint import EndpointChatOpenAI, EndpointRecorder
from milvus_rag.llm.factory import chat_model_from_settings, require_api_key
from milvus_rag.llm.failures import endpoint_error, header_error, response_error
from milvus_rag.llm.fallbacks import FALLBACK_ERRORS, FallbackChatModel
from milvus_rag.llm.probe import EndpointProbe, probe_endpoint

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
