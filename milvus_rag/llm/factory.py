"""The chat model the ``llm`` settings describe (an endpoint, or one with its fallbacks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel

from milvus_rag.errors import MissingAPIKeyError
from milvus_rag.llm.endpoint import EndpointChatOpenAI
from milvus_rag.llm.failures import shown_url
from milvus_rag.llm.fallbacks import FallbackChatModel

if TYPE_CHECKING:
    from milvus_rag.settings import LLMEndpoint, LLMSettings, Settings

__all__ = ["chat_model_from_settings", "require_api_key"]


def require_api_key(llm: LLMSettings | LLMEndpoint) -> str:
    """The API key to send; raises :class:`MissingAPIKeyError` when it is needed but unset."""
    if llm.api_key is not None:
        return llm.api_key.get_secret_value()
    if llm.api_key_env:
        raise MissingAPIKeyError(
            f"no API key for {shown_url(str(llm.base_url))}: set the environment variable {llm.api_key_env} "
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
