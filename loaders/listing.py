"""A source's files as listed: :class:`SourceFile` (read on demand, only while the source is
open), :class:`SourceListing`, and the ``max_file_bytes`` cap every read obeys."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from milvus_rag.loaders.globs import glob_match

from milvus_rag.errors import NoFilesMatchedError, SourceError

if TYPE_CHECKING:
    from milvus_rag.loaders.sources import SourceLimits

__all__ = ["Session", "SourceFile", "SourceListing", "check_file_size", "make_listing"]


@dataclass(frozen=True)
class SourceFile:
    """One file of a source, read on demand.

    Attributes:
        path: POSIX path relative to the source root (a single file: its name;
            a zip: the entry name, e.g. ``en/faq/product_faq.md``).
        size: uncompressed size in bytes, as listed.
        origin: stable label of the source root: the resolved absolute path of
            the folder, file or zip, or the URL as given less its secrets (see
            :func:`redact_url`).
    """

    path: str
    size: int
    origin: str
    _reader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)

    def read_bytes(self) -> bytes:
        """Read the file's content.

        Returns:
            The whole content.

        Raises:
            SourceError: the file is larger than ``max_file_bytes``, a zip member
                is corrupt, encrypted or longer than declared, the file vanished,
                or the source was already closed.
        """
        if self._reader is None:
            raise SourceError(f"{self.path} has no reader; obtain files from open_source()")
        return self._reader()


@dataclass
class SourceListing:
    """The files of an opened source.

    Attributes:
        origin: stable label of the source root (see :attr:`SourceFile.origin`).
        kind: ``"folder"``, ``"file"``, ``"zip"`` or ``"url"``.
        files: files matching the glob, sorted by path; directories excluded.
    """

    origin: str
    kind: str
    files: list[SourceFile]


class Session:
    """Shared open/closed state: readers refuse to run after the context exits."""

    def __init__(self) -> None:
        self.closed = False

    def ensure_open(self, label: str) -> None:
        if self.closed:
            raise SourceError(
                f"{label}: the source is closed; call read_bytes() inside the open_source() block"
            )


def make_listing(
    origin: str, kind: str, files: list[SourceFile], glob: str | None, label: str
) -> SourceListing:
    if glob:
        files = [f for f in files if glob_match(f.path, glob)]
    if not files:
        if glob:
            raise NoFilesMatchedError(f"no file in {label} matches --glob {glob!r}")
        raise NoFilesMatchedError(f"no file in {label}; check the source")
    files.sort(key=lambda f: f.path)
    return SourceListing(origin=origin, kind=kind, files=files)


def check_file_size(label: str, size: int, limits: SourceLimits) -> None:
    if size > limits.max_file_bytes:
        raise SourceError(
            f"{label} is {size:,} bytes, more than max_file_bytes ({limits.max_file_bytes:,}); "
            "raise the limit or leave the file out"
        )
