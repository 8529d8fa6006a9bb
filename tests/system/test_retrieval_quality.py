"""What retrieval must get right: headings, paraphrases over code, identifiers, units, loops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from milvus_rag.loaders import views

from milvus_rag.retriever import MilvusRAGRetriever
from milvus_rag.settings import Settings, load_settings
from milvus_rag.sync import ingest
from tests.support.openai_server import FakeOpenAIServer

SYNONYMS = [("repair", "fix"), ("car", "automobile"), ("fast", "quick")]

FAQ = """# Broker FAQ

#### Can a message broker be shared between clusters?

Yes: give each deployment its own tenant and namespace, then set the topic prefix, the
retention period and the quota of every team that uses it in the configuration file.

#### How is a topic named?

Topics take the deployment prefix.
"""
# A page that talks about sharing brokers at length: closer to the question than the
# short answer's own text is, but it does not answer it.
BROKERS = "# Brokers\n\n" + "A message broker shared between many clusters. " * 12 + "\n"
PROSE = (
    "# Engines\n\n"
    "## Workshop\n\n"
    "To fix an automobile quickly, open the hood, check the belts and tighten the bolts.\n"
)
CODE = (
    "# Demo\n\n## Output\n\nThe script prints what it loaded.\n\n```\n"
    "$ python demo.py\nloading the model\nconnecting to the database\nready\n"
    + "repair car fast\n" * 20
    + "```\n"
)

pytestmark = pytest.mark.slow
IDENTIFIER = "# Segments\n\nSet qzx7_maxsize to bound the segment size of each collection.\n"
OTHER = {
    f"other{i}.md": f"# Other {i}\n\nThe {word} grows in the garden near the house.\n"
    for i, word in enumerate(["tree", "apple", "banana", "food"])
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_model import make_tiny_model

    words = [FAQ, BROKERS, PROSE, CODE, IDENTIFIER, *OTHER.values()]
    return make_tiny_model(
        tmp_path_factory.mktemp("quality-model"), corpus=words, hidden=64, synonyms=SYNONYMS
    )


def _settings(db: Path, model_dir: Path, **retrieval: Any) -> Settings:
    return load_settings(
        overrides={
            "milvus": {"uri": str(db), "collection": "quality"},
            "embedding": {"model_dir": str(model_dir)},
            "retrieval": {"mode": "hybrid", **retrieval},
        }
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quality-corpus")
    files = {
        "faq.md": FAQ,
        "brokers.md": BROKERS,
        "prose.md": PROSE,
        "code.md": CODE,
        "config.md": IDENTIFIER,
        **OTHER,
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, corpus: Path) -> Settings:
    s = _settings(tmp_path_factory.mktemp("quality-db") / "q.db", model_dir)
    ingest(corpus, s)
    return s


def _top(s: Settings, question: str, **kw: Any) -> list[tuple[str, str]]:
    docs = MilvusRAGRetriever.from_settings(s, **kw).invoke(question)
    return [(d.metadata["source"], d.metadata.get("heading", "")) for d in docs]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_question_heading_wins(settings: Settings, mode: str) -> None:
    top = _top(settings, "Can a message broker be shared between clusters?", mode=mode)
    assert top[0] == ("faq.md", "Broker FAQ > Can a message broker be shared between clusters?")


def test_the_heading_wins_only_through_its_question_view(
    tmp_path: Path, model_dir: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from milvus_rag.loaders import documents

    monkeypatch.setattr(documents, "question_of", lambda heading: None)  # no question view
    s = _settings(tmp_path / "plain.db", model_dir)
    ingest(corpus, s)
    top = _top(s, "Can a message broker be shared between clusters?", mode="dense")
    assert top[0][0] == "brokers.md"


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_a_body_paraphrase_wins_over_code_repeating_the_words(
    settings: Settings, mode: str
) -> None:
    assert _top(settings, "repair car fast", mode=mode)[0][0] == "prose.md"


def test_the_code_block_wins_when_embedded_whole(
    tmp_path: Path, model_dir: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "CODE_LINES", 1000)
    s = _settings(tmp_path / "whole.db", model_dir)
    ingest(corpus, s)
    assert _top(s, "repair car fast", mode="dense")[0][0] == "code.md"


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_an_identifier_wins(settings: Settings, mode: str) -> None:
    assert _top(settings, "qzx7_maxsize", mode=mode)[0][0] == "config.md"


def test_one_chunk_per_unit_first(settings: Settings) -> None:
    docs = MilvusRAGRetriever.from_settings(settings, k=6, mode="dense").invoke("broker topic")
    units = [(d.metadata["source"], d.metadata["heading"]) for d in docs]
    assert len(set(units)) == len(units)  # the two FAQ answers are two units
    plain = MilvusRAGRetriever.from_settings(settings, k=6, mode="dense", diverse=False)
    assert sorted(units) == sorted(
        (d.metadata["source"], d.metadata["heading"]) for d in plain.invoke("broker topic")
    )
    # A page's chunks after the other pages' best chunks.
    docs = MilvusRAGRetriever.from_settings(settings, k=10, mode="dense").invoke("repair car")
    sources = [d.metadata["source"] for d in docs]
    first_repeat = next(i for i, s in enumerate(sources) if s in sources[:i])
    assert len(set(sources[:first_repeat])) == first_repeat


def test_views_are_stored_once_per_chunk_and_returned_once(settings: Settings) -> None:
    from milvus_rag.store import connect

    client = connect(settings.milvus)
    try:
        client.load_collection(settings.milvus.collection)
        rows = client.query(
            settings.milvus.collection,
            filter='source == "faq.md"',
            output_fields=["view", "position", "text"],
        )
    finally:
        client.close()
    assert sorted((r["position"], r["view"]) for r in rows) == [
        (0, "question"),
        (0, "text"),
        (1, "question"),
        (1, "text"),
    ]
    docs = MilvusRAGRetriever.from_settings(settings, k=10).invoke("broker")
    keys = [(d.metadata["source"], d.metadata["position"]) for d in docs]
    assert len(keys) == len(set(keys))


def test_async_under_several_event_loops(
    settings: Settings, make_settings: Callable[..., Settings], llm: FakeOpenAIServer
) -> None:
    """Each ``asyncio.run`` is a new loop: the retriever, the chain and the app keep working."""
    import httpx
    from milvus_rag.chains import build_rag_chain

    from milvus_rag.server import create_app

    chain_settings = make_settings(
        milvus={"uri": settings.milvus.uri, "collection": settings.milvus.collection},
        embedding={"model_dir": str(settings.embedding.model_dir)},
    )
    retriever = MilvusRAGRetriever.from_settings(chain_settings)
    chain = build_rag_chain(chain_settings)
    app = create_app(chain_settings)

    async def through_the_app() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            reply = await client.post(
                "/v1/chat/completions",
                json={"model": "milvus-rag", "messages": [{"role": "user", "content": "broker"}]},
                headers={"Authorization": "Bearer test"},
            )
            return reply.status_code

    for _ in range(2):
        assert asyncio.run(retriever.ainvoke("broker"))
        assert isinstance(asyncio.run(chain.ainvoke("Can a broker be shared?")), str)
        assert asyncio.run(through_the_app()) == 200
