"""`milvus_rag.server.state`: no route shows ingest bookkeeping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langserve")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from milvus_rag.chains import INTERNAL_METADATA

from milvus_rag.server import create_app
from milvus_rag.settings import Settings
from tests.support.openai_server import FakeOpenAIServer
from tests.support.server import (
    CHAT,
    QUESTION,
)

pytestmark = pytest.mark.slow


# -- 5. what clients see of documents ----------------------------------------------------

LEAKS = ['"origin"', '"source_hash"', '"chunk_count"', '"chunker"', '"chunk_set"']


def test_no_route_shows_ingest_bookkeeping(
    make_settings: Callable[..., Settings], faq_folder: Path, llm: FakeOpenAIServer
) -> None:
    from milvus_rag.retriever import MilvusRAGRetriever
    from milvus_rag.sync import ingest

    s = make_settings()
    ingest(faq_folder, s)
    # The bookkeeping is in Milvus (the retriever itself no longer returns it).
    store = MilvusRAGRetriever.from_settings(s).store()
    stored = store.client.query(
        store.collection_name, filter='source != ""', limit=1, output_fields=["*"]
    )[0]
    assert set(stored) >= INTERNAL_METADATA  # the store has them: the test can fail
    assert Path(stored["origin"]) == faq_folder.resolve()

    body = {"input": QUESTION}
    requests: list[tuple[str, Any]] = [
        (f"{base}/{kind}", body)
        for base in ("/rag", "/rag-with-sources", "/retrieve")
        for kind in ("invoke", "stream", "stream_log", "stream_events")
    ]
    requests += [
        ("/rag-with-sources/batch", {"inputs": [QUESTION]}),
        ("/v1/chat/completions", CHAT),
        ("/v1/chat/completions", {**CHAT, "stream": True}),
    ]
    with TestClient(create_app(s)) as client:
        for path, payload in requests:
            response = client.post(path, json=payload)
            assert response.status_code == 200, (path, response.text)
            text = response.text.replace("\\", "")  # event data is JSON inside JSON
            for leak in [*LEAKS, str(faq_folder.resolve())]:
                assert leak not in text, (path, leak)
        # What is kept: the relative source, heading and score.
        context = client.post("/rag-with-sources/invoke", json=body).json()["output"]["context"]
        assert context[0]["metadata"]["source"].startswith("en/")
        assert {"heading", "score", "position"} <= set(context[0]["metadata"])
        events = client.post("/retrieve/stream_events", json=body).text
        assert '"source": "en/' in events or '"source":"en/' in events
