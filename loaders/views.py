"""What of a chunk gets embedded: its *views*.

A chunk is stored once, as text the reader (and the LLM) sees. What the embedding
model sees can be a better representation of the same content:

* ``text``: the chunk text without what carries no meaning for a sentence
  model (:func:`plain_text`: link targets and bare URLs, images, HTML tags and
  entities; a markdown link keeps its words, ``[Scale Guide](scaleout.md)``
  reads ``Scale Guide``), and with each long code block cut to its first
  :data:`CODE_LINES` lines. Long URLs otherwise fill the model's window and
  split a section in two; long code and program output (a tutorial printing
  FAQ text) repeat prose words and pull paraphrased questions to code pages,
  while a block's first lines (the command, the call) carry its gist. Chunks
  are sized by their :func:`plain_text`, code included, so the stored text the
  LLM reads stays bounded.
* ``question``: when the chunk sits under a heading that is itself a question
  (``#### Does Milvus support Apple M1 CPU?``), that question alone. The
  section is the answer to it, and a sentence model matches a user's question
  to a stated question far better than to the answer's wording. The chunk is
  found by whichever view is closer.

Plain functions of text: nothing here knows Milvus, models or settings.

Example:
    >>> plain_text("See the [Scale Guide](https://milvus.io/docs/scaleout.md) <br/> now.")
    'See the Scale Guide now.'
    >>> embedding_text("```\\n" + "\\n".join(f"line {i}" for i in range(9)) + "\\n```")
    '```\\nline 0\\nline 1\\nline 2\\nline 3\\n```'
    >>> question_of("Product FAQ > Does Milvus support Apple M1 CPU?")
    'Does Milvus support Apple M1 CPU?'
    >>> question_of("Install > Overview") is None
    True
"""

from __future__ import annotations

import html
import re

__all__ = [
    "CODE_LINES",
    "MAX_VIEWS",
    "VIEWS_VERSION",
    "embedding_text",
    "plain_text",
    "question_of",
]

#: Bumped whenever the views of the same chunk change.
VIEWS_VERSION = 2
#: Non-blank lines of a fenced code block kept in the ``text`` view.
CODE_LINES = 4
#: The most views (stored rows) one chunk has: its text, and a question heading.
MAX_VIEWS = 2

_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\((?:[^()\s]|\([^)\s]*\))*(?:\s+\"[^\"]*\")?\)")
_LINK_RE = re.compile(r"\[([^\]]+)\]\((?:[^()\s]|\([^)\s]*\))*(?:\s+\"[^\"]*\")?\)")
_REFERENCE_RE = re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]*\S+.*$", re.M)
_URL_RE = re.compile(r"<?\b(?:https?|ftp)://[^\s<>)\]]+>?")
_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_SPACES_RE = re.compile(r"[ \t]+")
_BLANK_LINES_RE = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
_FENCE_RE = re.compile(r"^([ \t]*)(`{3,}|~{3,})([^\n]*)\n(.*?)^\1\2[ \t]*$", re.M | re.S)


def embedding_text(text: str) -> str:
    """The ``text`` view: :func:`plain_text` with long code blocks cut to their first lines."""
    if "```" in text or "~~~" in text:
        text = _FENCE_RE.sub(_first_code_lines, text)
    return plain_text(text)


def _first_code_lines(match: re.Match[str]) -> str:
    lines = [line for line in match.group(4).splitlines() if line.strip()]
    if len(lines) <= CODE_LINES:
        return match.group(0)
    indent, fence, info = match.group(1), match.group(2), match.group(3)
    return "\n".join([indent + fence + info, *lines[:CODE_LINES], indent + fence])


def plain_text(text: str) -> str:
    """``text`` without link targets, URLs, images and HTML markup.

    Falls back to ``text`` itself when nothing would be left.
    """
    out = _IMAGE_RE.sub(lambda m: m.group(1), text)
    out = _LINK_RE.sub(lambda m: m.group(1), out)
    out = _REFERENCE_RE.sub("", out)
    out = _URL_RE.sub("", out)
    if "<" in out:
        out = _TAG_RE.sub(" ", out)
    if "&" in out:
        out = html.unescape(out)
    out = _SPACES_RE.sub(" ", out)
    out = _BLANK_LINES_RE.sub("\n\n", out).strip()
    return out or text


def question_of(heading: str) -> str | None:
    """The question a heading path ends with (``"A > Is B?"`` -> ``"Is B?"``), if any."""
    last = heading.rsplit(" > ", 1)[-1].strip()
    if len(last) < 4 or not last.endswith("?"):
        return None
    return last
