"""`milvus_rag.choices`: the allowed values are the settings' literals."""

from __future__ import annotations

import pytest

from milvus_rag.errors import ConfigError
from milvus_rag.settings import LLM_PRESETS, load_settings


def test_choices_are_the_settings_literals() -> None:
    from typing import get_args

    from milvus_rag.loaders import SPLITTERS

    from milvus_rag.choices import LLMPresetName, RetrievalMode, SplitterName
    from milvus_rag.settings import IngestSettings, RetrievalSettings

    assert set(get_args(LLMPresetName)) == set(LLM_PRESETS)
    assert set(get_args(SplitterName)) == set(SPLITTERS)
    assert RetrievalSettings.model_fields["mode"].annotation is RetrievalMode
    assert IngestSettings.model_fields["splitter"].annotation is SplitterName
    with pytest.raises(ConfigError, match="retrieval.mode"):
        load_settings(overrides={"retrieval": {"mode": "sparse"}})
