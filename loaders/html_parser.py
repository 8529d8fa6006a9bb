"""HTML to text, model-free: BeautifulSoup's html.parser, never fetching anything.

:func:`parse_html` drops scripts, styles and other non-text elements, keeps
``<pre>`` spacing, writes headings as ``#`` lines, list items as ``- `` lines
and table rows as ``a | b``. Runs in the calling process (no worker); the
unstructured path reuses it for table markup.

The parser worker loads this file by path: standard library and sibling parser
modules only; BeautifulSoup is imported when a page is parsed.
"""

from __future__ import annotations

import re

from milvus_rag.loaders.parser_base import UnreadableFile
from milvus_rag.loaders.text_parser import looks_binary

__all__ = ["parse_html"]

_HTML_DROP = (
    "script",
    "style",
    "noscript",
    "template",
    "head",
    "iframe",
    "object",
    "embed",
    "svg",
    "canvas",
)
_HTML_BLOCKS = (
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy_lines(text: str) -> str:
    lines = []
    for raw in text.split("\n"):
        line = raw.strip()
        if line.strip("#- ") == "" and line:
            continue  # a heading or list marker left without text
        lines.append(line)
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def parse_html(data: bytes) -> tuple[str, tuple[str, ...]]:
    """Model-free HTML text: no scripts or styles, headings as '#' lines, never fetches."""
    from bs4 import BeautifulSoup, NavigableString
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction, Tag

    if looks_binary(data):
        raise UnreadableFile("binary content")
    soup = BeautifulSoup(data, "html.parser")
    notes: tuple[str, ...] = ()
    if getattr(soup, "contains_replacement_characters", False):
        notes = ("some characters could not be decoded and were replaced",)

    for tag in soup.find_all(list(_HTML_DROP)):
        if not getattr(tag, "decomposed", False):
            tag.decompose()
    for node in list(soup.descendants):
        if not isinstance(node, NavigableString):
            continue
        if isinstance(node, (Comment, Declaration, Doctype, ProcessingInstruction)):
            node.extract()
        elif node.find_parent("pre") is None:
            node.replace_with(" ".join(node.split()) if not node.isspace() else " ")
    for row in soup.find_all("tr"):
        if not isinstance(row, Tag) or getattr(row, "decomposed", False):
            continue
        cells = [c.get_text(" ", strip=True) for c in row.find_all(["td", "th"], recursive=False)]
        row.replace_with(" | ".join(c for c in cells if c) + "\n")
    for tag in soup.find_all(True):
        name = tag.name
        if name in _HEADINGS:
            tag.insert_before("\n\n" + "#" * _HEADINGS[name] + " ")
            tag.insert_after("\n\n")
        elif name == "li":
            tag.insert_before("\n- ")
        elif name == "br":
            tag.replace_with("\n")
        elif name in _HTML_BLOCKS:
            tag.insert_before("\n\n")
            tag.insert_after("\n\n")
    text = _tidy_lines(soup.get_text())
    if not text:
        raise UnreadableFile("no text content")
    return text, notes
