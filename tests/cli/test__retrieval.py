"""`milvus_rag.cli._retrieval`: what search, ask and chat share (empty questions, filter keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import one_line_error
from tests.support.cli_commands import run
from tests.support.openai_server import FakeOpenAIServer


@pytest.mark.parametrize(
    ("command", "question", "expected"),
    [
        ("ask", "", "error: the question is empty: give the text to answer"),
        ("ask", " \t ", "error: the question is empty: give the text to answer"),
        ("search", "", "error: the query is empty: give the text to search for"),
        ("search", "   ", "error: the query is empty: give the text to search for"),
    ],
)
def test_an_empty_question_is_one_line_and_exit_2(
    config: Path, llm: FakeOpenAIServer, command: str, question: str, expected: str
) -> None:
    err = one_line_error(run(command, question, "--config", str(config)), code=2)
    assert err == expected
    assert not llm.chat_requests()  # nothing was asked


@pytest.mark.slow
def test_unknown_filter_keys_name_the_known_ones(config: Path, faq_folder: Path) -> None:
    ingested = run("ingest", str(faq_folder), "--glob", "en/faq/*.md", "--config", str(config))
    assert ingested.exit_code == 0, ingested.output  # type: ignore[attr-defined]
    question = "Where does Milvus store data?"
    for command in ("search", "ask"):
        err = one_line_error(
            run(command, question, "--filter", "colour=red", "--config", str(config)), code=2
        )
        assert err.startswith("error: --filter colour: no chunk has this key; the chunks have: ")
        known = err.split("the chunks have: ", 1)[1].split(", ")
        assert {"source", "format", "position"} <= set(known) and "text" not in known
    err = one_line_error(run("chat", "--filter", "colour=red", "--config", str(config)), code=2)
    assert err.startswith("error: --filter colour: no chunk has this key")
    found = run("search", question, "--filter", "format=markdown", "--json", "-c", str(config))
    assert found.exit_code == 0 and json.loads(found.stdout)  # type: ignore[attr-defined]
