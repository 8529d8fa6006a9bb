"""Open a document source — folder, single file, zip archive or URL — as a lazy listing.

:func:`open_source` is a context manager yielding a :class:`SourceListing`: the
files of the source that match an optional glob, sorted by path, with their
sizes. Listing reads metadata only; bytes are read on demand through
:meth:`SourceFile.read_bytes`, inside the ``with`` block.

Guards, all driven by plain arguments in :class:`SourceLimits`:

* folders: hidden VCS directories are skipped; symlinks resolving outside the
  folder are skipped;
* zip archives are never extracted to disk. Every entry is validated before any
  member is decompressed: unsafe names (absolute, drive letter, ``..``) and
  symlink entries are refused, as are archives whose declared sizes, entry
  count or compression ratio exceed the limits (zip bombs). Members are read
  with a cap on the declared size;
* URLs: ``http``/``https`` only; before every request (the first and after each
  redirect, followed by hand) the host is resolved and refused if any address
  is not global (loopback, private, link-local, cloud metadata...) unless
  private URLs are allowed. The connection is pinned to the checked address so
  a second DNS answer cannot swap it. ``download_timeout`` bounds the whole
  download, redirects included (a watchdog cuts a connection that drips bytes).
  The body is size-capped, streamed to a temporary file removed when the context
  exits. A URL is stored and shown only through :func:`redact_url`: no user
  info, no query values, no fragment.

Example::

    with open_source("docs.zip", glob="en/faq/*.md") as listing:
        for item in listing.files:
            text = item.read_bytes().decode()
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from milvus_rag.loaders.archives import is_zip_file, open_zip, zip_files
from milvus_rag.loaders.downloads import open_url
from milvus_rag.loaders.folders import disk_file, walk_folder
from milvus_rag.loaders.globs import glob_match
from milvus_rag.loaders.listing import Session, SourceFile, SourceListing, make_listing
from milvus_rag.loaders.urls import check_url_allowed, is_url, redact_url

from milvus_rag.errors import SourceError

__all__ = [
    "SourceFile",
    "SourceLimits",
    "SourceListing",
    "check_url_allowed",
    "glob_match",
    "is_url",
    "open_source",
    "redact_url",
]


@dataclass(frozen=True)
class SourceLimits:
    """Safety limits applied while listing and reading a source.

    Attributes:
        max_archive_bytes: most total declared uncompressed size of all archive
            entries (matched or not).
        max_archive_ratio: most uncompressed/compressed ratio, per entry (above
            1 MiB) and for the whole archive.
        max_archive_files: most entries an archive may hold.
        max_download_bytes: most bytes a URL may return.
        download_timeout: most seconds the whole download may take, every
            redirect, connection and read included.
        allow_private_urls: allow URLs whose host resolves to a non-global
            address (loopback, private network, link-local...).
        max_file_bytes: most bytes of one file; larger files are refused when read.
    """

    max_archive_bytes: int = 1 << 30
    max_archive_ratio: float = 200.0
    max_archive_files: int = 100_000
    max_download_bytes: int = 200 << 20
    download_timeout: float = 30.0
    allow_private_urls: bool = False
    max_file_bytes: int = 100 << 20

    @classmethod
    def from_settings(cls, section: Any) -> SourceLimits:
        """The limits of an ``ingest`` settings section (same-named fields; the defaults
        above are the settings' defaults, tied by tests/test_settings.py)."""
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})


@contextmanager
def open_source(
    source: str | os.PathLike[str],
    *,
    glob: str | None = None,
    limits: SourceLimits = SourceLimits(),
) -> Iterator[SourceListing]:
    """Open a folder, file, zip archive or http(s) URL and list its files.

    Args:
        source: local path (folder, file, ``.zip``) or ``http``/``https`` URL.
        glob: keep only files whose relative path matches (see
            :func:`glob_match`); None (or empty) keeps every file.
        limits: safety limits.

    Yields:
        The listing; its files can be read until the context exits.

    Raises:
        SourceError: missing path, unreadable archive, unreadable file.
        NoFilesMatchedError: no file matches ``glob`` (or the source is empty).
        UnsafeSourceError: an archive or URL refused by a guard.
        DownloadError: a URL could not be downloaded or returned unusable content.
    """
    if isinstance(source, str) and not source.strip():
        # Path("") is the working folder: an unset shell variable must not ingest it.
        raise SourceError("the source is empty: give a folder, file, .zip archive or URL")
    session = Session()
    try:
        with contextlib.ExitStack() as stack:
            if isinstance(source, str) and is_url(source):
                listing = open_url(source, glob, limits, session, stack)
            else:
                listing = _open_path(source, glob, limits, session, stack)
            yield listing
    finally:
        session.closed = True


def _open_path(
    source: str | os.PathLike[str],
    glob: str | None,
    limits: SourceLimits,
    session: Session,
    stack: contextlib.ExitStack,
) -> SourceListing:
    label = os.fspath(source)
    try:
        path = Path(label).expanduser()
        info = path.stat()
    except FileNotFoundError:
        raise SourceError(f"source {label} does not exist; check the path") from None
    except OSError as exc:
        raise SourceError(f"source {label} cannot be read: {exc.strerror or exc}") from exc
    except (ValueError, RuntimeError):  # a NUL byte, a lone surrogate, ~ of an unknown user
        raise SourceError(f"source {label!r} is not a valid path") from None
    resolved = path.resolve()
    if stat.S_ISDIR(info.st_mode):
        files = walk_folder(resolved, str(resolved), limits, session)
        return make_listing(str(resolved), "folder", files, glob, label)
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(f"source {label} is neither a regular file nor a folder")
    if is_zip_file(resolved):
        archive = open_zip(resolved, label, stack)
        files = zip_files(archive, str(resolved), label, limits, session)
        return make_listing(str(resolved), "zip", files, glob, label)
    item = disk_file(resolved, resolved.name, str(resolved), info.st_size, limits, session)
    return make_listing(str(resolved), "file", [item], glob, label)
