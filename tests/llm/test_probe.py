"""`milvus_rag.llm.probe`: the probe names the variable of a key it may not send."""

from __future__ import annotations

import pytest

from milvus_rag.settings import load_settings
from tests.support.openai_server import FakeOpenAIServer
from tests.support.secrets import PRIMARY, _assert_clean


@pytest.mark.parametrize("key", [f"{PRIMARY}\r", f"{PRIMARY}\xe9"])
def test_the_probe_names_the_variable_of_a_key_that_cannot_be_sent(
    llm: FakeOpenAIServer, key: str
) -> None:
    from pydantic import SecretStr

    from milvus_rag.llm import probe_endpoint

    endpoint = load_settings(
        overrides={"llm": {"base_url": llm.base_url, "model": "m", "api_key_env": "MY_KEY"}}
    ).llm
    object.__setattr__(endpoint, "api_key", SecretStr(key))  # past the settings' checks
    probe = probe_endpoint(endpoint, 5)
    assert not probe.ok and "MY_KEY" in probe.message
    _assert_clean(probe.message + str(probe.fix), "the probe")
