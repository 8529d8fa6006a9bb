"""``milvus-rag delete``: removing documents and their state, asking first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import one_line_error
from tests.support.cli_commands import _ingest, run


@pytest.mark.slow
def test_delete_asks_first(config: Path, faq_folder: Path) -> None:
    _ingest(config, faq_folder)
    declined = run("delete", "en/faq/", "--config", str(config), input="n\n")
    assert declined.exit_code == 1 and "nothing deleted" in declined.stderr
    assert "delete these 4 documents" in declined.stdout
    assert (
        len(json.loads(run("sources", "--json", "--config", str(config)).stdout)["documents"]) == 4
    )
    accepted = run("delete", "en/faq/", "--config", str(config), input="y\n")
    assert accepted.exit_code == 0 and "deleted 4 documents" in accepted.stdout
    listed = run("sources", "--config", str(config))
    assert listed.stdout.startswith("collection test_docs: 0 documents")


@pytest.mark.slow
def test_delete_with_no_match_is_one_line(config: Path, faq_folder: Path) -> None:
    _ingest(config, faq_folder)
    result = run("delete", "en/nothing/*", "--yes", "--config", str(config))
    err = one_line_error(result, code=1)
    assert "en/nothing/*" in err and result.stdout == ""
