"""The ``llm`` section: the chat endpoint, its fallbacks, and the presets that fill them."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from milvus_rag.choices import LLMPresetName
from milvus_rag.settings.secrets import check_key_env, normalised_secret
from milvus_rag.settings.sections import Section

__all__ = ["LLM_PRESETS", "LLMEndpoint", "LLMPreset", "LLMSettings"]


class LLMPreset(BaseModel):
    """The endpoint, model and key variable a preset fills in."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    model: str
    api_key_env: str | None


LLM_PRESETS: dict[str, LLMPreset] = {
    # The tutorial's endpoint. Lepton's hosted *.lepton.run endpoints were retired
    # in 2025; the preset stays for parity and for self-hosted Lepton deployments.
    "lepton": LLMPreset(
        base_url="https://mistral-7b.lepton.run/api/v1/",
        model="mistral-7b",
        api_key_env="LEPTONAI_TOKEN",
    ),
    "nvidia": LLMPreset(
        base_url="https://integrate.api.nvidia.com/v1",
        model="meta/llama-3.3-70b-instruct",
        api_key_env="NVIDIA_API_KEY",
    ),
    "openai": LLMPreset(
        base_url="https://api.openai.com/v1",
        model="gpt-4o-mini",
        api_key_env="OPENAI_API_KEY",
    ),
    # An OpenAI-compatible server on this machine (Ollama, vLLM, llama.cpp): no key.
    "local": LLMPreset(
        base_url="http://localhost:11434/v1",
        model="llama3.2",
        api_key_env=None,
    ),
}


def _fill_endpoint(endpoint: _Endpoint) -> None:
    """Fill what ``endpoint`` leaves unset from its preset; check the base URL."""
    preset = LLM_PRESETS[endpoint.preset] if endpoint.preset is not None else None
    explicit = endpoint.model_fields_set
    if preset is not None:
        if "base_url" not in explicit or endpoint.base_url is None:
            object.__setattr__(endpoint, "base_url", preset.base_url)
        if "model" not in explicit or endpoint.model is None:
            object.__setattr__(endpoint, "model", preset.model)
        if "api_key_env" not in explicit:
            object.__setattr__(endpoint, "api_key_env", preset.api_key_env)
    elif endpoint.base_url is None or endpoint.model is None:
        raise ValueError("give a preset name, or base_url and model")
    if not str(endpoint.base_url).startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {endpoint.base_url!r}")


class _Endpoint(Section):
    """What the endpoint and each fallback have: a preset, or ``base_url`` + ``model``
    (+ ``api_key_env``); the key (from the environment only), checked where it is read."""

    #: How an error names this endpoint's key.
    KEY_LABEL: ClassVar[str] = "the LLM key"

    preset: LLMPresetName | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    api_key: SecretStr | None = Field(None, exclude=True)

    @field_validator("api_key_env")
    @classmethod
    def _not_our_secret(cls, value: str | None) -> str | None:
        return check_key_env(value)

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_is_clean(cls, value: Any) -> Any:
        return normalised_secret(value, cls.KEY_LABEL)

    @model_validator(mode="after")
    def _fill_from_preset(self) -> Self:
        _fill_endpoint(self)
        return self


class LLMEndpoint(_Endpoint):
    """A fallback endpoint: a preset name, or ``base_url`` + ``model`` (+ ``api_key_env``).

    Written in ``llm.fallbacks`` as a preset name (``nvidia``) or a mapping; its key
    is read from the variable named by ``api_key_env``. Timeout and retries are the
    ``llm`` section's.
    """

    KEY_LABEL: ClassVar[str] = "the fallback's key (llm.fallbacks api_key_env)"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"preset": value} if isinstance(value, str) else value


class LLMSettings(_Endpoint):
    """The OpenAI-compatible chat endpoint. ``preset`` fills what is not set.

    ``fallbacks`` serve, in order, when the endpoint is unreachable, times out, rate
    limits past its retries or fails with a 5xx.
    """

    KEY_LABEL: ClassVar[str] = "the LLM key (llm.api_key_env)"

    preset: LLMPresetName = "lepton"
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    temperature: float | None = Field(None, ge=0, le=2)
    fallbacks: list[LLMEndpoint] = Field(default_factory=list)

    def endpoints(self) -> list[LLMSettings | LLMEndpoint]:
        """The endpoint itself, then its fallbacks, in the order they are tried."""
        return [self, *self.fallbacks]
