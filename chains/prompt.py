"""The tutorial's prompt, and the neutralising of text placed inside it.

The system and user messages are the tutorial's, word for word. Retrieved
passages and the question are data: any ``<context>``, ``</context>``,
``<question>`` or ``</question>`` tag inside them (in any case or spacing) is
escaped to ``&lt;...&gt;`` so a document cannot close the context block or forge
a question.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate

__all__ = [
    "RAG_PROMPT",
    "SYSTEM_MESSAGE",
    "USER_MESSAGE",
    "format_docs",
    "neutralize",
]

SYSTEM_MESSAGE = (
    "Human: You are an AI assistant. You are able to find answers to the questions "
    "from the contextual passage snippets provided."
)

USER_MESSAGE = """Use the following pieces of information enclosed in <context> tags to provide an answer to the question enclosed in <question> tags.
<context>
{context}
</context>
<question>
{question}
</question>"""

RAG_PROMPT = ChatPromptTemplate.from_messages(
    [("system", SYSTEM_MESSAGE), ("human", USER_MESSAGE)],
    template_format="f-string",
)

_TAG = re.compile(r"<(\s*/?\s*(?:context|question)\b[^<>]*)>", re.IGNORECASE)


def neutralize(text: str) -> str:
    """Escape the prompt's own tags inside ``text`` so it stays data."""
    return _TAG.sub(lambda m: f"&lt;{m.group(1)}&gt;", text)


def format_docs(docs: Iterable[Document]) -> str:
    """The tutorial's context: the retrieved texts joined with newlines, neutralised."""
    return "\n".join(neutralize(doc.page_content) for doc in docs)
