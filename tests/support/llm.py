"""What the chat-model tests share: a chat model on the local OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Callable

from milvus_rag.llm import chat_model_from_settings
from milvus_rag.settings import Settings


def _model(make_settings: Callable[..., Settings], **llm: object):
    return chat_model_from_settings(make_settings(llm=llm))
