"""`milvus_rag.store.info`: what an engine can do and what a collection is, on Milvus Lite
(a server's answers: tests/system/test_milvus_server.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from milvus_rag.settings import Settings
from milvus_rag.store import (
    chunk_count,
    connect,
    has_sparse_field,
    lite_engine,
    scope_field_options,
    scope_is_partition_key,
    stored_analyzer,
    supports_bm25,
    supports_filter_templates,
    views_note,
)
from milvus_rag.store.info import count_chunks, upsert_misroutes
from tests.support.store import _create

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_chunks_and_views_are_said_one_way() -> None:
    assert chunk_count(1) == "1 chunk"
    assert chunk_count(61, 53) == "61 chunks (+53 question views)"
    assert chunk_count(2, 1) == "2 chunks (+1 question view)"
    assert views_note(0) == ""


def test_milvus_lite_capabilities_and_the_scope_field(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    client = connect(s.milvus)
    try:
        assert supports_bm25(client)  # Milvus Lite has the BM25 function
        assert not supports_filter_templates(client)
        options = scope_field_options(client)
        if (lite_engine() or "").startswith("3."):
            assert options is not None and options["is_partition_key"]
        else:  # Milvus Lite 2.5.1 keeps the scope a dynamic field (its engine's limits)
            assert options is None
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["hybrid", "dense"])
def test_a_collection_says_its_fields_analyzer_and_counts(
    make_settings: Callable[..., Settings], mode: str
) -> None:
    s = make_settings()
    _create(s, mode=mode)
    client = connect(s.milvus)
    name = s.milvus.collection
    try:
        assert has_sparse_field(client, name) is (mode == "hybrid")
        analyzer = stored_analyzer(client, name)
        assert (analyzer is not None) is (mode == "hybrid")
        assert count_chunks(client, name) == (1, 0)
        assert count_chunks(client, "no_such_collection") == (0, 0)
        partition_keyed = scope_is_partition_key(client, name)
        assert partition_keyed is (scope_field_options(client) is not None)
        assert not upsert_misroutes(client, name)  # only servers before 2.4
    finally:
        client.close()
