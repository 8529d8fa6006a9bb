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
  ends with :func:`source_list`. The model's text passes through
  :class:`CitationFilter` first: a marker naming no retrieved passage (``[999]``)
  is dropped, and so is a ``Sources:`` block of its own (made up, or copied from a
  document), so the list the chain appends is the only one presented as sources.
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
    "CitationFilter",
    "clean_citations",
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


#: A citation marker: ``[3]`` or ``[1, 3]`` (the space before it goes with it when dropped).
_MARKER = re.compile(r"( ?)\[(\d{1,12}(?:\s*,\s*\d{1,12})*)\]")
#: What may still grow into a marker at the end of the text received so far.
_MARKER_START = re.compile(r" ?\[[\d,\s]{0,40}$")
#: A line opening a source list: ``Sources:``, ``**References:**``, ``## Citations:``...
_HEADING = re.compile(
    r"[ \t]*[#>*_ \t]*(?:sources|references|citations)[*_ \t]*[:：]", re.IGNORECASE
)
_DECORATION = " \t#>*_"
_HEADING_WORDS = ("sources", "references", "citations")


class CitationFilter:
    """The model's cited answer, piece by piece, as it may be shown above the source list.

    Markers naming no passage (``[0]``, ``[999]`` with 3 passages) are dropped, numbers
    of a list kept if valid (``[1, 9]`` -> ``[1]``); a line opening a source list
    (``Sources:``, ``References:``, ``Citations:``, with Markdown decoration) is dropped
    with the lines that follow it up to the next blank line. Only what may still turn
    into a marker or a heading is held back, so a streamed answer stays streamed.

    Example:
        .. code-block:: python

            cited = CitationFilter(passages=2)
            text = cited.feed("Stored in S3 [1][9].\n\nSources:\n[1] evil.example") + cited.flush()
            assert text == "Stored in S3 [1]."
    """

    def __init__(self, passages: int) -> None:
        self.passages = passages
        self._held = ""
        self._line_start = True
        self._dropping = False
        self._space = ""  # trailing whitespace, shown only if text follows

    def feed(self, piece: str) -> str:
        """What can be shown of the answer so far, given its next ``piece``."""
        self._held += piece
        return self._shown(self._process(final=False))

    def flush(self) -> str:
        """The rest, once the answer is complete (trailing whitespace dropped)."""
        return self._shown(self._process(final=True)).rstrip()

    def _process(self, final: bool) -> str:
        out: list[str] = []
        text = self._held
        if not self._dropping:  # whitespace not shown yet: a marker after it takes it away
            text, self._space = self._space + text, ""
        while text:
            if self._dropping:
                end = text.find("\n\n")
                if end < 0:
                    text = "\n" if text.endswith("\n") and not final else ""
                    break
                text = text[end + 2 :]  # the blank line ends the block
                self._dropping, self._line_start = False, True
                continue
            if self._line_start:
                heading = _HEADING.match(text)
                if heading:
                    self._dropping = True
                    text = text[heading.end() :]
                    continue
                if not final and "\n" not in text and _may_open_heading(text):
                    break
                self._line_start = False
            newline = text.find("\n")
            line = text if newline < 0 else text[: newline + 1]
            rest = text[len(line) :]
            if newline < 0 and not final:
                partial = _MARKER_START.search(line)
                if partial:
                    line, rest = line[: partial.start()], line[partial.start() :]
                    out.append(self._valid(line))
                    text = rest
                    break
            out.append(self._valid(line))
            text = rest
            if newline >= 0:
                self._line_start = True
        self._held = text
        return "".join(out)

    def _valid(self, text: str) -> str:
        def keep(match: re.Match[str]) -> str:
            numbers = [n.strip() for n in match.group(2).split(",")]
            kept = [n for n in numbers if 1 <= int(n) <= self.passages]
            return f"{match.group(1)}[{', '.join(kept)}]" if kept else ""

        return _MARKER.sub(keep, text)

    def _shown(self, text: str) -> str:
        text = self._space + text
        body = text.rstrip()
        self._space = text[len(body) :]
        return body


def _may_open_heading(text: str) -> bool:
    """Whether a line starting with ``text`` may still be a source list's heading."""
    if len(text) > 40:
        return False
    word = text.lstrip(_DECORATION).lower()
    for heading in _HEADING_WORDS:
        if heading.startswith(word):
            return True
        if word.startswith(heading) and not word[len(heading) :].strip("*_ \t"):
            return True
    return False


def clean_citations(answer: str, passages: int) -> str:
    """A whole cited answer through :class:`CitationFilter`."""
    cited = CitationFilter(passages)
    return cited.feed(answer) + cited.flush()
