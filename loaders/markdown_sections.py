"""Markdown structure for the splitter: sections (a heading path and the paragraph and code
blocks of its body), and short sections carried into the section they introduce."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Block", "Section", "merge_tiny", "parse_sections"]

_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES_RE = re.compile(r"(?:^|[ \t]+)#+$")
_FENCE_OPEN_RE = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")
_COMMENT_RE = re.compile(r"<!--.*?-->", re.S)


@dataclass
class Block:
    """A paragraph of text or a whole fenced code block (``code`` set)."""

    text: str
    code: bool = False
    open_fence: str = ""
    close_fence: str = ""


@dataclass
class Section:
    """A heading (absent for the preamble) with the blocks of its body."""

    path: list[str]
    heading_line: str = ""
    blocks: list[Block] = field(default_factory=list)

    def body_chars(self) -> int:
        return sum(len(block.text.strip()) for block in self.blocks)


def _clean_heading(raw: str | None) -> str:
    title = (raw or "").strip()
    title = _CLOSING_HASHES_RE.sub("", title).strip()
    return title


def parse_sections(body: str) -> list[Section]:
    """Parse markdown into sections of paragraph and code blocks.

    HTML comments outside code are dropped; ``#`` lines inside fenced code blocks are
    not headings; an unclosed fence runs to the end and is closed.
    """
    parser = _Parser(body.splitlines())
    while parser.at < len(parser.lines):
        parser.read_line()
    parser.flush()
    sections = parser.sections
    if not sections[0].blocks:
        sections.pop(0)
    return sections


class _Parser:
    """One parse: the lines, the next one to read, the sections so far (a preamble first)
    with the open paragraph, the heading stack and whether a comment is open."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.at = 0
        self.sections: list[Section] = [Section(path=[])]
        self.stack: list[tuple[int, str]] = []
        self.para: list[str] = []
        self.in_comment = False
        self.last_close = max((n for n, line in enumerate(lines) if "-->" in line), default=-1)

    def flush(self) -> None:
        """End the open paragraph (a block of the current section unless blank)."""
        text = "\n".join(self.para).strip("\n")
        self.para.clear()
        if text.strip():
            self.sections[-1].blocks.append(Block(text=text))

    def read_line(self) -> None:
        """Read the next line: a comment, a code block (to its closing fence), a heading,
        a paragraph break or a paragraph's line."""
        self.at += 1
        line = self._without_comments(self.lines[self.at - 1])
        if line is None:
            return
        fence = _FENCE_OPEN_RE.match(line)
        if fence and not (fence.group(2)[0] == "`" and "`" in fence.group(3)):
            self._code_block(line, fence)
            return
        heading = _HEADING_RE.match(line)
        if heading:
            self._heading(line, heading)
            return
        if not line.strip():
            self.flush()
        else:
            self.para.append(line)

    def _without_comments(self, line: str) -> str | None:
        """``line`` without HTML comments (outside code), which may span lines; None when
        nothing of it is left to read."""
        if self.in_comment:
            end = line.find("-->")
            if end < 0:
                return None
            line = line[end + 3 :]
            self.in_comment = False
        if "<!--" in line:
            line = _COMMENT_RE.sub("", line)
            start = line.find("<!--")
            if start >= 0 and self.last_close >= self.at:  # only if a later line closes it
                line = line[:start]
                self.in_comment = True
            if not line.strip():
                # A comment-only line is neither content nor a paragraph break.
                return None
        return line

    def _code_block(self, line: str, fence: re.Match[str]) -> None:
        """The fenced code block ``line`` opens, to its closing fence (or the end)."""
        self.flush()
        char, length = fence.group(2)[0], len(fence.group(2))
        close_re = re.compile(rf"^[ \t]*{re.escape(char)}{{{length},}}[ \t]*$")
        code_lines = [line]
        close = ""
        while self.at < len(self.lines):
            code_line = self.lines[self.at]
            self.at += 1
            if close_re.match(code_line):
                close = code_line
                break
            code_lines.append(code_line)
        if not close:
            close = fence.group(1) + fence.group(2)
        self.sections[-1].blocks.append(
            Block(
                text="\n".join([*code_lines, close]),
                code=True,
                open_fence=line,
                close_fence=close,
            )
        )

    def _heading(self, line: str, heading: re.Match[str]) -> None:
        """A new section under ``heading``, its path the titles of the headings above it."""
        self.flush()
        level = len(heading.group(1))
        title = _clean_heading(heading.group(2))
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        if title:
            self.stack.append((level, title))
        self.sections.append(Section(path=[t for _, t in self.stack], heading_line=line.strip()))


def _is_prefix(short: list[str], long: list[str]) -> bool:
    return len(short) <= len(long) and long[: len(short)] == short


def _carry(pending: list[Section], target: Section) -> None:
    """Put the bodies of ``pending`` (``target``'s ancestors, in order) before its own."""
    carried = [block for section in pending for block in section.blocks]
    target.blocks = carried + target.blocks


def merge_tiny(sections: list[Section], min_chars: int) -> list[Section]:
    """Give every section with a body its own chunk, under its own heading path.

    A section whose body is shorter than ``min_chars`` is carried into the next
    section only when that section's heading path names it (a parent's short
    introduction goes with its first child; text before the first heading goes
    with whatever follows). Otherwise it stands alone: a short answer stays under
    its own question, never under a sibling's heading. Sections with no body are
    dropped (their titles live on in their children's paths), unless the document
    has nothing else.
    """
    merged: list[Section] = []
    pending: list[Section] = []

    def release() -> None:
        if pending:
            target = pending[-1]  # the deepest: its path names all the others
            _carry(pending[:-1], target)
            merged.append(target)
            pending.clear()

    for section in sections:
        if pending and not _is_prefix(pending[-1].path, section.path):
            release()
        if not section.blocks:
            continue
        if section.body_chars() < min_chars:
            pending.append(section)
            continue
        if pending:
            _carry(pending, section)
            pending.clear()
        merged.append(section)
    release()
    if not merged and sections:
        merged.append(sections[0])
    return merged
