"""What the chains' tests share: settings over a small stored corpus."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from milvus_rag.embeddings import embeddings_from_settings
from milvus_rag.settings import Settings
from milvus_rag.store import open_vector_store
from tests.support.conversation import DOCS


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    s = make_settings()
    store = open_vector_store(s, embeddings_from_settings(s), create=True)
    store.add_texts(
        [text for text, _, _ in DOCS],
        metadatas=[{"source": source, "heading": heading} for _, source, heading in DOCS],
        ids=[f"id{i}" for i in range(len(DOCS))],
    )
    store.client.close()
    return s
