"""What the splitter tests share: the FAQ document, word counts, balanced fences."""

from __future__ import annotations

import re

FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")


def words(text: str) -> int:
    """A simple custom length function: whitespace-separated words."""
    return len(text.split())


def fences_balanced(text: str) -> bool:
    """True if every fenced code block opened in ``text`` is closed."""
    open_fence: str | None = None
    for line in text.split("\n"):
        match = FENCE_RE.match(line)
        if not match:
            continue
        marker, rest = match.group(1), match.group(2)
        if open_fence is None:
            open_fence = marker
        elif marker[0] == open_fence[0] and len(marker) >= len(open_fence) and not rest.strip():
            open_fence = None
    return open_fence is None


def faq_doc(title: str, n_questions: int, doc_id: str = "faq.md") -> str:
    """A FAQ-like markdown file: front matter, H1, TOC comments, H4 questions."""
    parts = [
        f"---\nid: {doc_id}\nsummary: Answers about {title}.\ntitle: {title}\n---\n\n",
        f"# {title}\n\n<!-- TOC -->\n\n\n\n<!-- /TOC -->\n\n",
    ]
    for q in range(n_questions):
        parts.append(
            f"#### Question {q} about {title}?\n\n"
            f"Answer {q} explains the behaviour of component {q} in detail. "
            f"It stores data in bucket-{q} and logs every change.\n\n"
        )
    return "".join(parts)
