"""Text splitters: turn a document's text into :class:`Chunk` objects ready to embed.

Two strategies live here:

* :func:`split_tutorial` reproduces the original Milvus + Lepton AI tutorial exactly
  (``text.split("# ")``), for baselines and benchmarks.
* :class:`MarkdownSplitter` is the production splitter: YAML front matter becomes
  metadata, ATX headings build a heading path (``"H1 > H2 > H3"``) that prefixes every
  chunk, fenced code blocks are never cut (unless a single block is too large, in which
  case each piece is re-fenced), long sections are split by size with overlap, tiny
  fragments are merged, and no chunk exceeds a UTF-8 byte limit.  Plain text (from PDF,
  HTML or DOCX parsers) has no headings and is simply split by paragraphs and size.

:func:`cap_bytes` enforces the Milvus ``VARCHAR`` limit (:data:`MAX_TEXT_BYTES` UTF-8
bytes) on any list of chunks.  This module only takes plain arguments: it knows nothing
of Milvus clients, LLMs or settings objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from milvus_rag.loaders.chunks import MAX_TEXT_BYTES, Chunk, cap_bytes
from milvus_rag.loaders.front_matter import parse_front_matter
from milvus_rag.loaders.markdown_sections import Block, merge_tiny, parse_sections

__all__ = [
    "MARKDOWN_SPLITTER_VERSION",
    "MAX_TEXT_BYTES",
    "TUTORIAL_SPLITTER_VERSION",
    "Chunk",
    "MarkdownSplitter",
    "cap_bytes",
    "estimate_tokens",
    "parse_front_matter",
    "split_tutorial",
]

#: Bumped whenever a splitter's output changes for the same input and parameters, so
#: that stored files chunked by an older version are re-chunked on the next ingest.
MARKDOWN_SPLITTER_VERSION = 3
TUTORIAL_SPLITTER_VERSION = 1

# The defaults of the settings ingest.chunk_tokens, ingest.chunk_overlap and
# ingest.min_chunk_chars (loaders know nothing of settings; tests/test_settings.py ties
# these to the settings' defaults).
DEFAULT_CHUNK_TOKENS = 256
DEFAULT_CHUNK_OVERLAP = 32
DEFAULT_MIN_CHUNK_CHARS = 80

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[{_CJK}]|\d{{1,2}}|[^\W\d{_CJK}]{{1,6}}|[^\w\s]")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?;:。！？；])\s+|(?<=[。！？；])")
_WORD_RE = re.compile(r"\S+\s*|\s+")
_PATH_SEP = " > "


def estimate_tokens(text: str) -> int:
    """Cheap, deterministic estimate of subword tokens.

    Counts each CJK character, each run of up to 2 digits, each run of up to 6 other
    word characters and each punctuation mark.  On the Milvus docs its median ratio to
    a WordPiece tokenizer (all-MiniLM-L6-v2) is about 1.0, but technical text can need up
    to ~40% more real tokens, so pass the embedding tokenizer's counter as
    ``length_function`` when the model's sequence limit must hold exactly.
    """
    return len(_TOKEN_RE.findall(text))


# ---------------------------------------------------------------------------
# Tutorial splitter
# ---------------------------------------------------------------------------


def split_tutorial(text: str) -> list[Chunk]:
    """Split exactly like the tutorial: ``text.split("# ")``.

    Every piece is kept, including empty ones and the front matter, and each chunk gets
    empty metadata.  On the four ``en/faq/*.md`` files of the Milvus 2.4.x docs this
    yields 72 chunks.
    """
    return [Chunk(text=piece, metadata={}) for piece in text.split("# ")]


@dataclass
class _Segment:
    """Atomic unit for packing: never cut further, joined with ``joiner`` before it."""

    text: str
    tokens: int
    joiner: str
    code: bool = False


# ---------------------------------------------------------------------------
# Splitter
# ---------------------------------------------------------------------------


class MarkdownSplitter:
    """Heading-aware, fence-safe, size-capped markdown splitter.

    Args:
        max_tokens: Maximum tokens per chunk, heading path line included (as measured by
            ``length_function``; a heading path longer than half of ``max_tokens`` may
            push a chunk over the limit).
        overlap: Tokens of trailing text (paragraphs, then sentences, then words) carried
            from one piece of a long section into the next.  Code is never carried.
        min_chars: Sections whose body is shorter than this are merged into the next
            section (or the previous one if last) instead of forming their own chunk.
        length_function: Counts tokens in a string; defaults to :func:`estimate_tokens`.
        max_bytes: Hard cap on each chunk's UTF-8 size (applied with :func:`cap_bytes`).
    """

    def __init__(
        self,
        max_tokens: int = DEFAULT_CHUNK_TOKENS,
        overlap: int = DEFAULT_CHUNK_OVERLAP,
        min_chars: int = DEFAULT_MIN_CHUNK_CHARS,
        length_function: Callable[[str], int] | None = None,
        max_bytes: int = 60000,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if overlap < 0 or overlap >= max_tokens:
            raise ValueError(f"overlap must be in [0, max_tokens), got {overlap}")
        if min_chars < 0:
            raise ValueError(f"min_chars must be >= 0, got {min_chars}")
        if max_bytes < 4:
            raise ValueError(f"max_bytes must be at least 4, got {max_bytes}")
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.min_chars = min_chars
        self.length_function: Callable[[str], int] = length_function or estimate_tokens
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return (
            f"MarkdownSplitter(max_tokens={self.max_tokens}, overlap={self.overlap}, "
            f"min_chars={self.min_chars}, max_bytes={self.max_bytes})"
        )

    # -- public -------------------------------------------------------------

    def split(self, text: str) -> list[Chunk]:
        """Split markdown or plain ``text`` into chunks (``[]`` for blank input).

        Every chunk's metadata holds the front matter fields plus ``"heading"`` (the
        heading path, ``""`` before the first heading or for plain text).  Chunk text is
        the heading path line, a blank line, then (part of) the section body.
        """
        if not text or not text.strip():
            return []
        front, body = parse_front_matter(text)
        sections = merge_tiny(parse_sections(body), self.min_chars)
        chunks: list[Chunk] = []
        for section in sections:
            heading = _PATH_SEP.join(section.path)
            metadata = {**front, "heading": heading}
            prefix = heading + "\n\n" if heading else ""
            bodies = self._split_blocks(section.blocks, prefix)
            if not bodies and heading:
                bodies = [""]
            for piece in bodies:
                chunk_text = (prefix + piece).strip()
                if chunk_text:
                    chunks.append(Chunk(text=chunk_text, metadata=dict(metadata)))
        return cap_bytes(chunks, self.max_bytes)  # type: ignore[no-any-return]

    # -- internals ------------------------------------------------------------

    def _count(self, text: str) -> int:
        return self.length_function(text)

    def _split_blocks(self, blocks: list[Block], prefix: str) -> list[str]:
        """Pack a section's blocks into bodies of at most the token budget."""
        if not blocks:
            return []
        budget = self.max_tokens - (self._count(prefix) if prefix else 0)
        budget = max(budget, self.max_tokens // 2, 1)
        segments: list[_Segment] = []
        for block in blocks:
            if block.code:
                segments.extend(self._code_segments(block, budget))
            else:
                segments.extend(self._text_segments(block.text, budget))
        return self._pack(segments, budget)

    def _text_segments(self, text: str, budget: int) -> list[_Segment]:
        tokens = self._count(text)
        if tokens <= budget:
            return [_Segment(text=text, tokens=tokens, joiner="\n\n")]
        pieces = self._split_text(text, budget)
        segments = [_Segment(text=p, tokens=self._count(p), joiner="") for p in pieces]
        segments[0].joiner = "\n\n"
        return segments

    def _split_text(self, text: str, budget: int) -> list[str]:
        """Cut text (keeping all characters) into pieces of at most ``budget`` tokens.

        Tries line boundaries, then sentence boundaries, then words, then characters.
        """
        out: list[str] = []
        for line in text.splitlines(keepends=True):
            if self._count(line) <= budget:
                out.append(line)
                continue
            for sentence in _split_keep(line, _SENTENCE_END_RE):
                if self._count(sentence) <= budget:
                    out.append(sentence)
                    continue
                out.extend(self._split_words(sentence, budget))
        return out

    def _split_words(self, text: str, budget: int) -> list[str]:
        """Group words (with their trailing whitespace) into pieces within ``budget``."""
        out: list[str] = []
        current: list[str] = []
        current_tokens = 0
        for word in _WORD_RE.findall(text):
            tokens = self._count(word)
            if tokens > budget:
                if current:
                    out.append("".join(current))
                    current, current_tokens = [], 0
                out.extend(self._split_chars(word, budget))
                continue
            if current and current_tokens + tokens > budget:
                out.append("".join(current))
                current, current_tokens = [], 0
            current.append(word)
            current_tokens += tokens
        if current:
            out.append("".join(current))
        return out

    def _split_chars(self, text: str, budget: int) -> list[str]:
        """Last resort: longest character prefixes within ``budget`` (binary search)."""
        out: list[str] = []
        rest = text
        while rest:
            # Gallop to a window that overflows, then binary-search inside it, so the
            # cost stays proportional to the piece length rather than the whole text.
            hi = max(budget, 1)
            while hi < len(rest) and self._count(rest[:hi]) <= budget:
                hi *= 2
            if hi >= len(rest) and self._count(rest) <= budget:
                out.append(rest)
                break
            lo, hi = max(hi // 2, 1), min(hi, len(rest))
            if self._count(rest[:lo]) > budget:
                lo = 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._count(rest[:mid]) <= budget:
                    lo = mid
                else:
                    hi = mid - 1
            out.append(rest[:lo])
            rest = rest[lo:]
        return out

    def _code_segments(self, block: Block, budget: int) -> list[_Segment]:
        """A code block as one segment, or re-fenced line groups if it is too large."""
        tokens = self._count(block.text)
        if tokens <= budget:
            return [_Segment(text=block.text, tokens=tokens, joiner="\n\n", code=True)]
        inner = block.text.split("\n")[1:-1]
        fence_tokens = self._count(block.open_fence + "\n" + block.close_fence)
        inner_budget = max(budget - fence_tokens, 1)
        lines: list[str] = []
        for line in inner:
            if self._count(line) <= inner_budget:
                lines.append(line)
            else:
                lines.extend(p.rstrip("\n") for p in self._split_words(line, inner_budget))
        groups: list[list[str]] = []
        current: list[str] = []
        current_tokens = 0
        for line in lines:
            line_tokens = self._count(line)
            if current and current_tokens + line_tokens > inner_budget:
                groups.append(current)
                current, current_tokens = [], 0
            current.append(line)
            current_tokens += line_tokens
        if current:
            groups.append(current)
        segments = []
        for group in groups:
            piece = "\n".join([block.open_fence, *group, block.close_fence])
            segments.append(
                _Segment(text=piece, tokens=self._count(piece), joiner="\n\n", code=True)
            )
        return segments

    def _pack(self, segments: list[_Segment], budget: int) -> list[str]:
        """Greedily pack segments into pieces, carrying an overlap between pieces."""
        pieces: list[str] = []
        current: list[_Segment] = []
        n_carry = 0  # leading segments of ``current`` that repeat the previous piece
        for segment in segments:
            current_tokens = sum(s.tokens for s in current)
            if current and current_tokens + segment.tokens > budget:
                fresh = current[n_carry:]
                fresh_tokens = sum(s.tokens for s in fresh)
                if (
                    n_carry
                    and sum(len(s.text.strip()) for s in fresh) < self.min_chars
                    and fresh_tokens + segment.tokens <= budget
                ):
                    # A tiny remainder would stand alone: give up the overlap instead.
                    current, n_carry = fresh, 0
                else:
                    if fresh:
                        pieces.append(_join(current))
                    limit = min(self.overlap, budget - segment.tokens)
                    carry = self._overlap_tail(current, limit)
                    current, n_carry = carry, len(carry)
            current.append(segment)
        if len(current) > n_carry:
            pieces.append(_join(current))
        return pieces

    def _overlap_tail(self, segments: list[_Segment], limit: int) -> list[_Segment]:
        """Trailing text of ``segments`` worth at most ``limit`` tokens (never code)."""
        if limit <= 0:
            return []
        tail: list[_Segment] = []
        total = 0
        for segment in reversed(segments):
            if segment.code:
                break
            if total + segment.tokens <= limit:
                tail.insert(0, segment)
                total += segment.tokens
                continue
            # Only cut into a segment when nothing whole fits, so the overlap never starts
            # with a sentence fragment glued in front of whole lines or paragraphs.
            partial = "" if tail else self._partial_tail(segment.text, limit)
            if partial:
                tail.insert(0, _Segment(text=partial, tokens=self._count(partial), joiner=""))
            break
        if tail:
            tail[0] = _Segment(text=tail[0].text.lstrip(), tokens=tail[0].tokens, joiner="")
        return tail

    def _partial_tail(self, text: str, limit: int) -> str:
        """Longest suffix of whole sentences, else whole words, within ``limit`` tokens."""
        if limit <= 0:
            return ""
        for pattern in (_SENTENCE_END_RE, None):
            units = _split_keep(text, pattern) if pattern else _WORD_RE.findall(text)
            taken: list[str] = []
            total = 0
            for unit in reversed(units):
                tokens = self._count(unit)
                if total + tokens > limit:
                    break
                taken.insert(0, unit)
                total += tokens
            if taken and total > 0:
                return "".join(taken)
        return ""


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split after each match of ``pattern``, keeping the matched text on the left."""
    pieces: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        end = match.end()
        if end > start:
            pieces.append(text[start:end])
            start = end
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _join(segments: Iterable[_Segment]) -> str:
    parts: list[str] = []
    for segment in segments:
        if parts:
            parts.append(segment.joiner)
        parts.append(segment.text)
    return "".join(parts).strip()
