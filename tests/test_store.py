"""`milvus_rag.store`: the schema's field names are the store's constants."""

from __future__ import annotations

import re

from tests.support.paths import REPO


def test_schema_field_names_are_store_constants() -> None:
    # A schema field name (the row fields ingest writes and retrieval reads) is written once,
    # as a constant in schema.py (re-exported by the store); everywhere in the package, the
    # store included, it is used as metadata/row key, filter field or output field only
    # through that constant. Loaders, which know nothing of Milvus, name their own Document
    # metadata (``source``, ``position``, ``heading``).
    from milvus_rag import store

    names = [
        getattr(store, n)
        for n in store.__all__
        if n.endswith("_FIELD") and getattr(store, n) not in ("id", "text")
    ]
    assert {"source", "origin", "position", "heading", "source_hash", "chunk_set"} <= set(names)
    alternatives = "|".join(names)
    uses = re.compile(
        rf"""(?:\b(?:metadata|meta|row|entity|fields)(?:\.get\(|\[)|\beq\(|\bin_\()\s*["'](?:{alternatives})["']"""
        rf"""|output_fields=\[[^\]]*["'](?:{alternatives})["']"""
        rf"""|["'](?:{alternatives})["']\s+in\s+meta"""
    )
    paths = [*(REPO / "milvus_rag").rglob("*.py"), *(REPO / "chains").glob("*.py")]
    for path in paths:
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        code = re.sub(r'"""[\s\S]*?"""', "", code)  # docstrings may name the fields
        found = uses.findall(code)
        assert not found, f"{path.relative_to(REPO)} spells a schema field: {found}"
