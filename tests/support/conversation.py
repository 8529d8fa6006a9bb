"""What the conversation tests share: the corpus, the question, the chat history, the messages sent."""

from __future__ import annotations

from typing import Any

from milvus_rag.chains import (
    USER_MESSAGE,
)

from tests.support.corpus import STORAGE_ANSWER

QUESTION = "Where does Milvus store data?"


FAQ_HEADING = "Product FAQ > Where does Milvus store data?"


DOCS = [
    (f"{FAQ_HEADING}\n\n{STORAGE_ANSWER}", "en/faq/product_faq.md", FAQ_HEADING),
    ("Zebras graze on the savanna grass all day long.", "en/animals/zebra.md", "Zebras"),
    ("Guitar strings are tuned with pegs at the head of the guitar.", "en/music/guitar.md", ""),
    ("Bread is baked in a hot oven until the crust is brown.", "en/food/bread.md", "Bread"),
]


def _messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return request["body"]["messages"]


def _tutorial_user(context: str, question: str) -> str:
    return USER_MESSAGE.format(context=context, question=question)
