"""The tutorial's prompt, and the neutralising of text placed inside it.

The system and user messages are the tutorial's, word for word. Retrieved
passages and the question are data: any ``<context>``, ``</context>``,
``<question>`` or ``</question>`` tag inside them (in any case or spacing) is
escaped to ``&lt;...&gt;`` so a document cannot close the context block or forge
a question.

Two additions, used only when asked for:

- :data:`CONDENSE_PROMPT` rewrites a follow-up question into a standalone one
  from the chat history (only when there is history);
- with citations, the passages are numbered (``[1] ...``),
  :data:`CITATION_INSTRUCTION` is added to the system message, and the answer
  ends with :func:`source_list`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate

from milvus_rag.store import HEADING_FIELD, SOURCE_FIELD

__all__ = [
    "CITATION_INSTRUCTION",
    "CONDENSE_PROMPT",
    "RAG_PROMPT",
    "SYSTEM_MESSAGE",
    "USER_MESSAGE",
    "format_docs",
    "neutralize",
    "source_label",
    "source_list",
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

#: The one line added to the system message when the answer must cite its passages.
CITATION_INSTRUCTION = (
    "The passages are numbered; cite the ones you use by their numbers in square brackets, "
    "like [1] or [2]."
)

CONDENSE_SYSTEM = (
    "Rewrite the last question of a conversation as a standalone question that can be "
    "understood without the conversation. Keep its language. Reply with the question only; "
    "do not answer it."
)

CONDENSE_USER = """Conversation:
{history}

Last question: {question}"""

#: The short prompt that turns a follow-up question into a standalone question.
CONDENSE_PROMPT = ChatPromptTemplate.from_messages(
    [("system", CONDENSE_SYSTEM), ("human", CONDENSE_USER)],
    template_format="f-string",
)

_TAG = re.compile(r"<(\s*/?\s*(?:context|question)\b[^<>]*)>", re.IGNORECASE)


def neutralize(text: str) -> str:
    """Escape the prompt's own tags inside ``text`` so it stays data."""
    return _TAG.sub(lambda m: f"&lt;{m.group(1)}&gt;", text)


def format_docs(docs: Iterable[Document], *, numbered: bool = False) -> str:
    """The tutorial's context: the retrieved texts joined with newlines, neutralised.

    With ``numbered``, each passage starts with its number (``[1] ...``) and
    passages are separated by a blank line, so the answer can cite them.
    """
    texts = [neutralize(doc.page_content) for doc in docs]
    if not numbered:
        return "\n".join(texts)
    return "\n\n".join(f"[{rank}] {text}" for rank, text in enumerate(texts, 1))


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def source_label(doc: Document) -> str:
    """``source — heading path`` (or the source alone), on one line."""
    source = _one_line(doc.metadata.get(SOURCE_FIELD) or "unknown source")
    heading = _one_line(doc.metadata.get(HEADING_FIELD) or "")
    return f"{source} — {heading}" if heading else source


def source_list(docs: Iterable[Document]) -> str:
    """The numbered source list appended to a cited answer (empty without passages).

    ``Sources:`` then one ``[n] source — heading`` line per passage, numbered as
    in the context the LLM saw.
    """
    lines = [f"[{rank}] {source_label(doc)}" for rank, doc in enumerate(docs, 1)]
    return "Sources:\n" + "\n".join(lines) if lines else ""
