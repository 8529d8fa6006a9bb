"""`milvus_rag.settings.endpoints`: presets and fallbacks of the ``llm`` section."""

from __future__ import annotations

import pytest

from milvus_rag.errors import ConfigError
from milvus_rag.settings import LLM_PRESETS, load_settings


@pytest.mark.parametrize(
    ("preset", "base_url", "model", "key_env"),
    [
        (
            "nvidia",
            "https://integrate.api.nvidia.com/v1",
            "meta/llama-3.3-70b-instruct",
            "NVIDIA_API_KEY",
        ),
        ("openai", "https://api.openai.com/v1", LLM_PRESETS["openai"].model, "OPENAI_API_KEY"),
        ("local", LLM_PRESETS["local"].base_url, LLM_PRESETS["local"].model, None),
    ],
)
def test_presets_fill_endpoint(preset: str, base_url: str, model: str, key_env: str | None) -> None:
    s = load_settings(overrides={"llm": {"preset": preset}})
    assert (s.llm.base_url, s.llm.model, s.llm.api_key_env) == (base_url, model, key_env)


# --------------------------------------------------------------------------- fallbacks


def test_fallbacks_take_presets_and_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVIDIA_API_KEY", "nv-secret")
    monkeypatch.setenv("OTHER_KEY", "other-secret")
    s = load_settings(
        overrides={
            "llm": {
                "preset": "openai",
                "fallbacks": [
                    "nvidia",
                    "local",
                    {"base_url": "http://gpu:8080/v1", "model": "m", "api_key_env": "OTHER_KEY"},
                ],
            }
        }
    )
    nvidia, local, own = s.llm.fallbacks
    assert (nvidia.base_url, nvidia.model) == (
        LLM_PRESETS["nvidia"].base_url,
        LLM_PRESETS["nvidia"].model,
    )
    assert nvidia.api_key is not None and nvidia.api_key.get_secret_value() == "nv-secret"
    assert local.api_key_env is None and local.api_key is None
    assert own.api_key is not None and own.api_key.get_secret_value() == "other-secret"
    assert s.llm.endpoints()[0].base_url == LLM_PRESETS["openai"].base_url
    shown = s.redacted()["llm"]["fallbacks"]
    assert [f["api_key"] for f in shown] == ["**********", None, "**********"]
    assert "secret" not in str(s.redacted())


def test_fallbacks_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_RAG_LLM__FALLBACKS", '["local", "nvidia"]')
    assert [f.preset for f in load_settings().llm.fallbacks] == ["local", "nvidia"]


@pytest.mark.parametrize(
    ("fallback", "needle"),
    [
        ("nvidea", "llm.fallbacks.0.preset"),
        ({"base_url": "http://x/v1"}, "preset name, or base_url and model"),
        ({"base_url": "ftp://x", "model": "m"}, "http:// or https://"),
        ({"preset": "local", "api_key_env": "MILVUS_RAG_MILVUS__TOKEN"}, "api_key_env"),
        ({"preset": "local", "colour": "red"}, "unknown key"),
    ],
)
def test_bad_fallbacks_name_the_key(fallback: object, needle: str) -> None:
    with pytest.raises(ConfigError, match="llm.fallbacks") as info:
        load_settings(overrides={"llm": {"fallbacks": [fallback]}})
    assert needle in str(info.value)
