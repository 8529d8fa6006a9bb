"""`milvus_rag.chains.prompt`: neutralised tags, numbered citations, the system text."""

from __future__ import annotations

import pytest
from milvus_rag.chains import (
    CITATION_INSTRUCTION,
    SYSTEM_MESSAGE,
    build_rag_chain,
    build_rag_chain_with_sources,
    neutralize,
)

from milvus_rag.settings import Settings
from tests.support.conversation import FAQ_HEADING, QUESTION, _messages, _tutorial_user
from tests.support.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.slow


def test_neutralize_variants() -> None:
    for tag in ("</context>", "<CONTEXT>", "< /question >", "<question id='x'>"):
        assert "<" not in neutralize(f"a {tag} b")
    assert neutralize("a <b>bold</b> <contextual>") == "a <b>bold</b> <contextual>"


def test_citations_number_passages_and_list_sources(
    settings: Settings, llm: FakeOpenAIServer
) -> None:
    chain = build_rag_chain_with_sources(settings)
    result = chain.invoke({"question": QUESTION, "citations": True})
    docs = result["context"]
    assert docs[0].metadata["source"] == "en/faq/product_faq.md"
    listing = "\n".join(
        f"[{i}] {d.metadata['source']}"
        + (f" — {d.metadata['heading']}" if d.metadata["heading"] else "")
        for i, d in enumerate(docs, 1)
    )
    assert result["answer"] == f"{llm.answer}\n\nSources:\n{listing}"
    assert f"[1] en/faq/product_faq.md — {FAQ_HEADING}" in result["answer"]
    system, user = _messages(llm.chat_requests()[-1])
    assert system["content"] == f"{SYSTEM_MESSAGE}\n{CITATION_INSTRUCTION}"
    numbered = "\n\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(docs, 1))
    assert user["content"] == _tutorial_user(numbered, QUESTION)

    # Streamed: the answer's pieces, then the source list, added by the chain.
    pieces = [
        p for p in build_rag_chain(settings).stream({"question": QUESTION, "citations": True})
    ]
    assert pieces[-1] == f"\n\nSources:\n{listing}" and "".join(pieces) == result["answer"]


def test_system_text_is_appended_to_the_system_message(
    settings: Settings, llm: FakeOpenAIServer
) -> None:
    chain = build_rag_chain(settings)
    chain.invoke({"question": QUESTION, "system": "Answer in French.", "citations": True})
    system = _messages(llm.chat_requests()[-1])[0]["content"]
    assert system == f"{SYSTEM_MESSAGE}\n{CITATION_INSTRUCTION}\nAnswer in French."
