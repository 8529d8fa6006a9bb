"""Chat history: the forms the chains accept, and what the rewrite step sees.

A history is a list of messages, each one of:

- a LangChain ``BaseMessage`` (``HumanMessage``, ``AIMessage``, ``SystemMessage``);
- a ``(role, content)`` pair, e.g. ``("user", "Where is data stored?")``;
- an OpenAI-style dict, ``{"role": "assistant", "content": "..."}`` (content may
  be a list of ``{"type": "text", "text": ...}`` parts), or a LangChain-style
  dict with ``"type"`` instead of ``"role"``.

Roles: ``user``/``human``, ``assistant``/``ai``, ``system``/``developer``.
Only user and assistant turns reach the rewrite prompt; system messages in a
history are ignored there (pass the chains' ``system`` input instead).

Example:
    .. code-block:: python

        from milvus_rag.chains import messages_from

        messages_from([("user", "What is Milvus?"), {"role": "assistant", "content": "A DB."}])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

__all__ = ["message_text", "messages_from", "recent_turns", "standalone_question", "transcript"]

_ROLES: dict[str, type[BaseMessage]] = {
    "user": HumanMessage,
    "human": HumanMessage,
    "assistant": AIMessage,
    "ai": AIMessage,
    "system": SystemMessage,
    "developer": SystemMessage,
}


def message_text(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
        return "".join(texts)
    if content is None:
        return ""
    raise TypeError(f"message content must be text, got {type(content).__name__}")


def _message(role: Any, content: Any) -> BaseMessage:
    cls = _ROLES.get(role) if isinstance(role, str) else None
    if cls is None:
        raise ValueError(f"unknown chat_history role {role!r}: use user, assistant or system")
    return cls(content=message_text(content))


def messages_from(history: Iterable[Any] | None) -> list[BaseMessage]:
    """Normalise a chat history to LangChain messages (text content).

    Raises:
        TypeError: an item is not a message, a ``(role, content)`` pair or a dict.
        ValueError: a role is not user, assistant or system.
    """
    if history is None:
        return []
    if isinstance(history, (str, bytes, Mapping)):
        raise TypeError("chat_history must be a list of messages")
    messages: list[BaseMessage] = []
    for item in history:
        if isinstance(item, BaseMessage):
            role = {"human": "user", "ai": "assistant"}.get(item.type, item.type)
            messages.append(_message(role, item.content))
        elif isinstance(item, Mapping):
            messages.append(_message(item.get("role", item.get("type")), item.get("content")))
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)) and len(item) == 2:
            messages.append(_message(item[0], item[1]))
        else:
            raise TypeError(
                "each chat_history item must be a message, a (role, content) pair "
                'or {"role": ..., "content": ...}'
            )
    return messages


def recent_turns(messages: Sequence[BaseMessage], turns: int) -> list[BaseMessage]:
    """The user and assistant messages of the last ``turns`` turns (a question and its answers)."""
    if turns <= 0:
        return []
    conversation: list[BaseMessage] = [
        m for m in messages if isinstance(m, (HumanMessage, AIMessage))
    ]
    starts = [i for i, m in enumerate(conversation) if isinstance(m, HumanMessage)]
    if len(starts) > turns:
        conversation = conversation[starts[-turns] :]
    return conversation


def transcript(messages: Iterable[BaseMessage]) -> str:
    """``User: ...`` / ``Assistant: ...`` lines for the rewrite prompt."""
    lines = []
    for message in messages:
        who = "User" if isinstance(message, HumanMessage) else "Assistant"
        lines.append(f"{who}: {message_text(message.content).strip()}")
    return "\n".join(lines)


_LABELS = ("standalone question:", "rewritten question:", "question:")


def standalone_question(reply: str, fallback: str, limit: int | None = None) -> str:
    """The rewrite step's reply as one question (``fallback`` when it is empty).

    Strips a leading label (``Standalone question:``) and wrapping quotes, and
    joins lines, so the reply can be retrieved on and placed in the answer prompt.
    With ``limit``, the question is cut to at most that many characters (a rewrite
    is no longer than a question may be).
    """
    if limit is not None:  # whitespace collapses below: a generous prefix is enough
        reply = reply[: 8 * limit + 64]
    text = " ".join(reply.split())
    lowered = text.lower()
    for label in _LABELS:
        if lowered.startswith(label):
            text = text[len(label) :].strip()
            break
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    if limit is not None:
        text = text[:limit].rstrip()
    return text or fallback
