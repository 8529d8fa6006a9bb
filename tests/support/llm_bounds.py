"""What the bounded-call tests share: a retriever of fixed passages, the question, running a chain."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support import passages

QUESTION = "Where does Milvus store data?"


CHAT_WITHOUT_MODEL = {"messages": [{"role": "user", "content": QUESTION}]}


class Passages(passages.Passages):
    """Two fixed passages, whatever the question, with their sources and scores."""

    sources: tuple[str, str] = ("storage.md", "meta.md")
    scores: tuple[float, float] | None = (0.9, 0.8)


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
