"""What the bounded-call tests share: a retriever of fixed passages, the question, running a chain."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

QUESTION = "Where does Milvus store data?"


CHAT_WITHOUT_MODEL = {"messages": [{"role": "user", "content": QUESTION}]}


class Passages(BaseRetriever):
    """Two fixed passages, whatever the question."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [
            Document(
                page_content="Milvus stores data in object storage.",
                metadata={"source": "storage.md", "score": 0.9},
            ),
            Document(
                page_content="Metadata lives in etcd.", metadata={"source": "meta.md", "score": 0.8}
            ),
        ]


def _run(call: str, chain: Any, value: Any) -> Any:
    if call == "invoke":
        return chain.invoke(value)
    if call == "stream":
        return list(chain.stream(value))
    if call == "ainvoke":
        return asyncio.run(chain.ainvoke(value))

    async def consume() -> list[Any]:
        return [part async for part in chain.astream(value)]

    return asyncio.run(consume())
