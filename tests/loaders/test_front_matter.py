"""`milvus_rag.loaders.front_matter`: YAML front matter parsed or ignored."""

from __future__ import annotations

import pytest
from milvus_rag.loaders.splitters import (
    parse_front_matter,
)

# ---------------------------------------------------------------------------
# parse_front_matter
# ---------------------------------------------------------------------------


def test_parse_front_matter_basic() -> None:
    text = "---\nid: a.md\ntitle: A\nsummary: S\norder: 3\ndeprecate: true\ntags: [x, y]\n---\n\n# A\nbody\n"
    meta, body = parse_front_matter(text)
    assert meta == {
        "doc_id": "a.md",
        "title": "A",
        "summary": "S",
        "order": "3",
        "deprecate": "true",
        "tags": ["x", "y"],
    }
    assert body == "\n# A\nbody\n"


@pytest.mark.parametrize(
    "text",
    [
        "# No front matter\n",
        "---\nid: [unclosed\n---\nbody\n",  # invalid YAML
        "---\njust a string\n---\nbody\n",  # not a mapping
        "---\nid: x\nno closing line\n",
        "text\n---\nid: x\n---\n",  # not leading
    ],
)
def test_parse_front_matter_absent_or_invalid(text: str) -> None:
    assert parse_front_matter(text) == ({}, text)


def test_parse_front_matter_empty_block() -> None:
    assert parse_front_matter("---\n---\nbody") == ({}, "body")
