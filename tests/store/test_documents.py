"""`milvus_rag.store.documents`: ingest records moved out of collection properties."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from milvus_rag.settings import Settings
from milvus_rag.store import connect
from tests.support.store import _create, _properties_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.contract]


def test_ingest_records_in_properties_are_moved(make_settings: Callable[..., Settings]) -> None:
    import json

    from milvus_rag.store import INGESTS_PROPERTY, ingest_records, record_ingest

    s = make_settings()
    _create(s)
    name = s.milvus.collection
    client = connect(s.milvus)
    _properties_or_skip(client, name)
    old = {
        "runs": [
            {"origin": "/old", "glob": None, "at": "2026-01-01T00:00:00+00:00", "splitter": "m"}
        ],
        "chunkers": {"fp-old": "m"},
    }
    client.alter_collection_properties(name, properties={INGESTS_PROPERTY: json.dumps(old)})
    assert ingest_records(client, name) == old
    record_ingest(client, name, origin="/new", glob="*.md", splitter="m", chunker="fp", at="x")
    records = ingest_records(client, name)
    assert [run["origin"] for run in records["runs"]] == ["/old", "/new"]
    assert records["chunkers"] == {"fp-old": "m", "fp": "m"}
    record_ingest(client, name, origin="/old", glob=None, splitter="t", chunker="fp", at="y")
    assert [(r["origin"], r["at"]) for r in ingest_records(client, name)["runs"]] == [
        ("/new", "x"),
        ("/old", "y"),
    ]
