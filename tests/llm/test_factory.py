"""`milvus_rag.llm.factory`: the chat model from settings (presets, keys, the default timeout)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from milvus_rag.errors import (
    MissingAPIKeyError,
)
from milvus_rag.llm import chat_model_from_settings
from milvus_rag.settings import Settings


def test_default_timeout_is_60s() -> None:
    from milvus_rag.settings import load_settings

    model = chat_model_from_settings(load_settings(overrides={"llm": {"preset": "local"}}))
    assert model.request_timeout == 60


def test_missing_key_names_the_variable(make_settings: Callable[..., Settings]) -> None:
    from milvus_rag.settings import load_settings

    with pytest.raises(MissingAPIKeyError, match="LEPTONAI_TOKEN"):
        chat_model_from_settings(load_settings())


def test_local_preset_needs_no_key() -> None:
    from milvus_rag.settings import load_settings

    model = chat_model_from_settings(load_settings(overrides={"llm": {"preset": "local"}}))
    assert model.openai_api_key is not None
