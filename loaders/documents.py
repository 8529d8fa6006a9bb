"""``SourceLoader``: a LangChain ``BaseLoader`` over any source, yielding chunks.

Plain arguments only: this module knows nothing of Milvus, the LLM or settings.

Example:
    .. code-block:: python

        from milvus_rag.loaders import SourceLoader

        loader = SourceLoader("milvus_docs_2.4.x_en.zip", glob="en/faq/*.md", splitter="tutorial")
        docs = loader.load()
        assert len(docs) == 72
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document
from milvus_rag.loaders.formats import (
    DEFAULT_PARSE_TIMEOUT,
    UnreadableFile,
    format_of,
    parse_file,
)
from milvus_rag.loaders.sources import SourceLimits, open_source
from milvus_rag.loaders.splitters import (
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_MIN_CHUNK_CHARS,
    MARKDOWN_SPLITTER_VERSION,
    TUTORIAL_SPLITTER_VERSION,
    Chunk,
    MarkdownSplitter,
    cap_bytes,
    estimate_tokens,
    split_tutorial,
)
from milvus_rag.loaders.views import VIEWS_VERSION, embedding_text, plain_text, question_of

__all__ = ["SPLITTERS", "SourceLoader", "Splitter", "make_splitter", "markdown_views"]


@dataclass(frozen=True)
class Splitter:
    """A named text splitter plus everything that determines its output.

    Calling it splits a text into :class:`Chunk` objects. :attr:`fingerprint` is a
    short digest of its name, version and parameters (the token counter's identity
    included): two splitters with the same fingerprint give the same chunks for
    the same text, so an ingest can record it and re-chunk files when it changes.
    """

    name: str
    split: Callable[[str], list[Chunk]] = field(repr=False, compare=False)
    params: tuple[tuple[str, Any], ...] = ()
    views: Callable[[Chunk], list[tuple[str, str]]] = field(
        default=lambda chunk: [("text", chunk.text)], repr=False, compare=False
    )
    """What of a chunk is embedded: ``[(view name, text to embed), ...]``, ``text`` first."""

    def __call__(self, text: str) -> list[Chunk]:
        return self.split(text)

    @property
    def fingerprint(self) -> str:
        record = json.dumps({"name": self.name, **dict(self.params)}, sort_keys=True)
        return hashlib.sha256(record.encode("utf-8")).hexdigest()[:16]


def make_splitter(
    name: str,
    *,
    max_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap: int = DEFAULT_CHUNK_OVERLAP,
    min_chars: int = DEFAULT_MIN_CHUNK_CHARS,
    length_function: Callable[[str], int] | None = None,
) -> Splitter:
    """The splitter called ``name``: ``tutorial`` (exact ``"# "`` split) or ``markdown``.

    ``tutorial`` embeds each chunk's text as it is, as the tutorial does.
    ``markdown`` embeds the views of :mod:`milvus_rag.loaders.views` (the text
    without link targets and markup, and a question heading on its own), and
    sizes chunks by the tokens of what is embedded.

    ``length_function`` counts tokens for ``markdown`` (default: a tokenizer-free
    estimate); give it an ``identity`` attribute (as
    :class:`~milvus_rag.embeddings.TokenCounter` has) so the fingerprint names it.
    """
    factory = SPLITTERS.get(name)
    if factory is None:
        raise ValueError(f"unknown splitter {name!r}: use one of {', '.join(SPLITTERS)}")
    return factory(max_tokens, overlap, min_chars, length_function)


def _tutorial(
    max_tokens: int, overlap: int, min_chars: int, length_function: Callable[[str], int] | None
) -> Splitter:
    """The tutorial's ``split("# ")`` (sizes do not apply), chunks embedded as they are."""
    return Splitter(
        "tutorial",
        lambda text: cap_bytes(split_tutorial(text)),
        (("version", TUTORIAL_SPLITTER_VERSION),),
    )


def _markdown(
    max_tokens: int, overlap: int, min_chars: int, length_function: Callable[[str], int] | None
) -> Splitter:
    """The heading-aware splitter, sized by the tokens of what is embedded, with views."""
    counter = length_function or estimate_tokens
    counter_id = getattr(counter, "identity", None) or getattr(
        counter, "__qualname__", type(counter).__name__
    )
    splitter = MarkdownSplitter(
        max_tokens=max_tokens,
        overlap=overlap,
        min_chars=min_chars,
        length_function=lambda text: counter(plain_text(text)),
    )
    params = (
        ("version", MARKDOWN_SPLITTER_VERSION),
        ("max_tokens", max_tokens),
        ("overlap", overlap),
        ("min_chars", min_chars),
        ("max_bytes", splitter.max_bytes),
        ("tokens", str(counter_id)),
        ("views", VIEWS_VERSION),
    )
    return Splitter("markdown", splitter.split, params, markdown_views)


#: Splitter name -> factory; the names are ``milvus_rag.choices.SplitterName`` (a test
#: keeps the two equal), so settings and ``--splitter`` accept exactly these.
SPLITTERS: dict[str, Callable[[int, int, int, Callable[[str], int] | None], Splitter]] = {
    "markdown": _markdown,
    "tutorial": _tutorial,
}


def markdown_views(chunk: Chunk) -> list[tuple[str, str]]:
    """The markdown splitter's views: the cleaned text, and the question heading if any."""
    views = [("text", embedding_text(chunk.text))]
    question = question_of(str(chunk.metadata.get("heading", "")))
    if question is not None:
        views.append(("question", question))
    return views


class SourceLoader(BaseLoader):
    """Load a folder, file, zip archive or URL and split it into chunk ``Document``\\ s.

    Each document's metadata holds ``source`` (path relative to the folder or
    archive), ``position`` (chunk index in its file), ``origin``, ``format`` and
    what the splitter adds (``heading``, front-matter ``title``...). Files no
    parser can read are skipped and listed in :attr:`skipped`.

    Example:
        .. code-block:: python

            from milvus_rag.loaders import SourceLoader

            for doc in SourceLoader("docs/", glob="**/*.md").lazy_load():
                print(doc.metadata["source"], doc.metadata["position"])
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        glob: str | None = None,
        splitter: str | Callable[[str], list[Chunk]] = "markdown",
        limits: SourceLimits | None = None,
        parse_timeout: float = DEFAULT_PARSE_TIMEOUT,
    ) -> None:
        self.source = source
        self.glob = glob
        self.split = make_splitter(splitter) if isinstance(splitter, str) else splitter
        self.limits = limits or SourceLimits()
        self.parse_timeout = parse_timeout
        self.skipped: list[tuple[str, str]] = []

    def lazy_load(self) -> Iterator[Document]:
        """Yield chunks file by file; nothing is read before it is needed."""
        with open_source(self.source, glob=self.glob, limits=self.limits) as listing:
            for item in listing.files:
                if format_of(item.path) is None:
                    self.skipped.append((item.path, "unsupported file type"))
                    continue
                try:
                    parsed = parse_file(
                        item.path, item.read_bytes(), parse_timeout=self.parse_timeout
                    )
                except (UnreadableFile, OSError) as exc:
                    self.skipped.append((item.path, str(exc)))
                    continue
                for position, chunk in enumerate(self.split(parsed.text)):
                    metadata = {
                        **chunk.metadata,
                        "source": item.path,
                        "position": position,
                        "origin": listing.origin,
                        "format": parsed.format,
                    }
                    yield Document(page_content=chunk.text, metadata=metadata)
