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
import functools
import ipaddress
import os
import re
import socket
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from milvus_rag.loaders.formats import CONTENT_TYPE_SUFFIXES, SUPPORTED_SUFFIXES

from milvus_rag.errors import (
    DownloadError,
    NoFilesMatchedError,
    SourceError,
    UnsafeSourceError,
)

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

_MIB = 1 << 20
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj", "_darcs", "CVS"})
# Formats that are zip containers but are documents in their own right.
_ZIP_BASED_DOCUMENTS = frozenset({".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub"})
_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# From the table of formats: the suffixes of a document, and Content-Type -> the suffix
# given to a downloaded document whose URL names none.
_DOCUMENT_SUFFIXES = SUPPORTED_SUFFIXES
_DOCUMENT_TYPES = CONTENT_TYPE_SUFFIXES
# Supported formats that are zip containers: a download of one is a document, not an archive.
_ZIP_DOCUMENT_SUFFIXES = _DOCUMENT_SUFFIXES & _ZIP_BASED_DOCUMENTS
_URL_WITH_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_KNOWN_SCHEME = re.compile(
    r"^(?:https?|file|ftps?|sftp|gopher|data|dict|ldaps?|smb|tftp|jar|netdoc|mailto):",
    re.IGNORECASE,
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_QUERY_KEY = re.compile(r"[A-Za-z0-9_.~%\-\[\]]{1,64}")


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


class _Session:
    """Shared open/closed state: readers refuse to run after the context exits."""

    def __init__(self) -> None:
        self.closed = False

    def ensure_open(self, label: str) -> None:
        if self.closed:
            raise SourceError(
                f"{label}: the source is closed; call read_bytes() inside the open_source() block"
            )


# --------------------------------------------------------------------------- globs


def glob_match(path: str, pattern: str) -> bool:
    """Tell whether a POSIX relative path matches a glob pattern.

    ``*`` and ``?`` never cross ``/``; a ``**`` component matches any number of
    directories, none included (``a/**/b`` matches ``a/b``); ``[abc]``,
    ``[a-z]`` and ``[!abc]`` are character classes. Matching is case-sensitive
    and a leading ``./`` in the pattern is ignored.

    Args:
        path: relative path with ``/`` separators.
        pattern: the glob.

    Returns:
        True when the whole path matches.

    Raises:
        SourceError: the pattern is not a valid glob.
    """
    return _compile_glob(pattern).fullmatch(path) is not None


@functools.lru_cache(maxsize=256)
def _compile_glob(pattern: str) -> re.Pattern[str]:
    text = pattern
    while text.startswith("./"):
        text = text[2:]
    segments = text.split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_segment_regex(segment) + ("" if last else "/"))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:
        raise SourceError(f"invalid glob pattern {pattern!r}: {exc}; fix --glob") from exc


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        char = segment[i]
        if char == "*":
            while i < n and segment[i] == "*":
                i += 1
            out.append("[^/]*")
            continue
        if char == "?":
            out.append("[^/]")
        elif char == "[":
            end = i + 1
            if end < n and segment[end] in "!^":
                end += 1
            if end < n and segment[end] == "]":
                end += 1
            while end < n and segment[end] != "]":
                end += 1
            if end >= n:
                out.append(re.escape(char))
            else:
                body = segment[i + 1 : end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                escaped = "".join(c if c == "-" else re.escape(c) for c in body)
                out.append(f"[^/{escaped}]" if negate else f"(?!/)[{escaped}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------- entry point


def is_url(source: str) -> bool:
    """Tell whether a source string is a URL rather than a local path.

    Anything shaped ``scheme://...`` is a URL, as are well-known schemes
    without slashes (``file:``, ``data:``...). Windows drive paths (``C:\\x``)
    are not URLs.

    Args:
        source: the source as given by the user.

    Returns:
        True for a URL of any scheme (safe or not).
    """
    return bool(_URL_WITH_AUTHORITY.match(source) or _KNOWN_SCHEME.match(source))


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
    session = _Session()
    try:
        with contextlib.ExitStack() as stack:
            if isinstance(source, str) and is_url(source):
                listing = _open_url(source, glob, limits, session, stack)
            else:
                listing = _open_path(source, glob, limits, session, stack)
            yield listing
    finally:
        session.closed = True


def _open_path(
    source: str | os.PathLike[str],
    glob: str | None,
    limits: SourceLimits,
    session: _Session,
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
        files = _walk_folder(resolved, str(resolved), limits, session)
        return _listing(str(resolved), "folder", files, glob, label)
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(f"source {label} is neither a regular file nor a folder")
    if _is_zip_file(resolved):
        archive = _open_zip(resolved, label, stack)
        files = _zip_files(archive, str(resolved), label, limits, session)
        return _listing(str(resolved), "zip", files, glob, label)
    item = _disk_file(resolved, resolved.name, str(resolved), info.st_size, limits, session)
    return _listing(str(resolved), "file", [item], glob, label)


def _listing(
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


# --------------------------------------------------------------------------- folders and files


def _walk_folder(
    root: Path, origin: str, limits: SourceLimits, session: _Session
) -> list[SourceFile]:
    files: list[SourceFile] = []
    visited: set[str] = {str(root)}

    def inside(real: str) -> bool:
        return real == str(root) or real.startswith(str(root).rstrip(os.sep) + os.sep)

    def walk(directory: Path, prefix: str) -> None:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return  # unreadable sub-folder: nothing to list
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not inside(real):
                        continue  # resolves outside the folder: skipped
                    target = os.stat(real)
                    if stat.S_ISDIR(target.st_mode):
                        if entry.name not in _VCS_DIRS and real not in visited:
                            visited.add(real)
                            walk(Path(real), rel + "/")
                    elif stat.S_ISREG(target.st_mode):
                        files.append(
                            _disk_file(Path(real), rel, origin, target.st_size, limits, session)
                        )
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name in _VCS_DIRS:
                        continue
                    real = os.path.realpath(entry.path)
                    if real not in visited:
                        visited.add(real)
                        walk(Path(entry.path), rel + "/")
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    files.append(_disk_file(Path(entry.path), rel, origin, size, limits, session))
            except OSError:
                continue  # vanished or dangling entry

    walk(root, "")
    return files


def _disk_file(
    real: Path, rel: str, origin: str, size: int, limits: SourceLimits, session: _Session
) -> SourceFile:
    def read() -> bytes:
        label = f"{origin}: {rel}" if rel != real.name or origin != str(real) else str(real)
        session.ensure_open(label)
        try:
            with open(real, "rb") as handle:
                actual = os.fstat(handle.fileno()).st_size
                _check_file_size(label, actual, limits)
                data = handle.read(limits.max_file_bytes + 1)
        except OSError as exc:
            raise SourceError(f"{label} cannot be read: {exc.strerror or exc}") from exc
        _check_file_size(label, len(data), limits)
        return data

    return SourceFile(path=rel, size=size, origin=origin, _reader=read)


def _check_file_size(label: str, size: int, limits: SourceLimits) -> None:
    if size > limits.max_file_bytes:
        raise SourceError(
            f"{label} is {size:,} bytes, more than max_file_bytes ({limits.max_file_bytes:,}); "
            "raise the limit or leave the file out"
        )


# --------------------------------------------------------------------------- zip archives


def _is_zip_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return True
    if suffix in _ZIP_BASED_DOCUMENTS:
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in _ZIP_MAGIC
    except OSError:
        return False


def _open_zip(path: Path, label: str, stack: contextlib.ExitStack) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        raise SourceError(f"{label} is not a readable zip archive ({exc})") from exc
    stack.callback(archive.close)
    return archive


def _unsafe_name(name: str) -> bool:
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[/\\]", name)


def _zip_files(
    archive: zipfile.ZipFile,
    origin: str,
    label: str,
    limits: SourceLimits,
    session: _Session,
) -> list[SourceFile]:
    """Validate every entry (names, sizes, ratios) and return the member files."""
    infos = archive.infolist()
    if len(infos) > limits.max_archive_files:
        raise UnsafeSourceError(
            f"archive {label}: {len(infos):,} entries, more than max_archive_files "
            f"({limits.max_archive_files:,}); refused"
        )
    total_size = 0
    total_compressed = 0
    for info in infos:
        name = info.filename
        if _unsafe_name(name):
            raise UnsafeSourceError(
                f"archive {label}: entry {name!r} escapes the archive root; refused"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeSourceError(f"archive {label}: entry {name!r} is a symlink; refused")
        total_size += info.file_size
        total_compressed += info.compress_size
        if info.file_size > _MIB:
            ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
            if ratio > limits.max_archive_ratio:
                raise UnsafeSourceError(
                    f"archive {label}: entry {name!r} expands {info.compress_size:,} bytes "
                    f"to {info.file_size:,} (ratio {ratio:.0f} > max_archive_ratio "
                    f"{limits.max_archive_ratio:g}); refused as a possible zip bomb"
                )
    if total_size > limits.max_archive_bytes:
        raise UnsafeSourceError(
            f"archive {label}: entries total {total_size:,} bytes uncompressed, more than "
            f"max_archive_bytes ({limits.max_archive_bytes:,}); refused"
        )
    if total_size > _MIB:
        ratio = total_size / total_compressed if total_compressed else float("inf")
        if ratio > limits.max_archive_ratio:
            raise UnsafeSourceError(
                f"archive {label}: {total_compressed:,} compressed bytes expand to "
                f"{total_size:,} (ratio {ratio:.0f} > max_archive_ratio "
                f"{limits.max_archive_ratio:g}); refused as a possible zip bomb"
            )
    members: dict[str, SourceFile] = {}
    for info in infos:
        if info.is_dir():
            continue
        path = "/".join(
            p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")
        )
        if not path:
            continue
        # A duplicated name: the last entry wins, as with ZipFile.getinfo().
        members[path] = SourceFile(
            path=path,
            size=info.file_size,
            origin=origin,
            _reader=_zip_reader(archive, info, label, limits, session),
        )
    return list(members.values())


def _zip_reader(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    label: str,
    limits: SourceLimits,
    session: _Session,
) -> Callable[[], bytes]:
    entry = f"archive {label}: entry {info.filename!r}"

    def read() -> bytes:
        session.ensure_open(entry)
        if info.flag_bits & 0x1:
            raise SourceError(f"{entry} is encrypted; decrypt the archive first")
        _check_file_size(entry, info.file_size, limits)
        cap = info.file_size
        try:
            with archive.open(info) as member:
                data = member.read(cap + 1)
        except NotImplementedError as exc:
            raise SourceError(f"{entry} uses an unsupported compression ({exc})") from exc
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise SourceError(f"{entry} is corrupt ({exc}); repair or rebuild the archive") from exc
        if len(data) > cap:
            raise SourceError(f"{entry} holds more bytes than declared ({cap:,}); refused")
        if len(data) < cap:
            raise SourceError(f"{entry} is truncated ({len(data):,} of {cap:,} bytes)")
        return data

    return read


# --------------------------------------------------------------------------- URLs


def redact_url(url: str) -> str:
    """A URL as it may be stored and shown: no user info, no query values, no fragment.

    ``http://user:pw@host/doc.md?X-Amz-Signature=abc&v=2#top`` becomes
    ``http://host/doc.md?X-Amz-Signature=&v=``: query keys that look like
    parameter names are kept, so the label still tells a signed URL from a plain
    one. Everything before the first ``/`` after ``scheme://`` and up to the last
    ``@`` is user info, even when it holds an unescaped ``#`` or ``?``. URLs that
    differ only in query values get the same label (and so the same origin).

    Args:
        url: the URL as given (any scheme, well-formed or not).

    Returns:
        The redacted URL; a URL without secrets is returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    prefix = ""
    if sep:
        slash = rest.find("/")
        authority, tail = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        prefix, rest = scheme + sep, authority.rpartition("@")[2] + tail
    rest = rest.partition("#")[0]
    base, _, query = rest.partition("?")
    keys = [
        key
        for key, eq, _value in (pair.partition("=") for pair in query.split("&"))
        if eq and _QUERY_KEY.fullmatch(key)
    ]
    return prefix + base + ("?" + "&".join(f"{key}=" for key in keys) if keys else "")


def _resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` to its IP addresses (module-level so tests can replace it)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is_public_address(address: str) -> bool:
    """Tell whether an IP address is globally routable (not internal in any way)."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return False
    return ip.is_global


def check_url_allowed(url: str, allow_private: bool = False) -> list[str]:
    """Check that a URL may be fetched and return the addresses its host resolves to.

    Args:
        url: the URL to fetch.
        allow_private: accept hosts resolving to non-global addresses.

    Returns:
        The resolved addresses, in resolver order (all global unless
        ``allow_private``).

    Raises:
        UnsafeSourceError: not ``http``/``https``, no host, or a non-global
            address while ``allow_private`` is false.
        DownloadError: the host cannot be resolved.
    """
    shown = redact_url(url)
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise UnsafeSourceError(f"{shown} is not a valid URL; check it") from exc
    if scheme not in ("http", "https"):
        raise UnsafeSourceError(
            f"{shown}: scheme {scheme + ':' if scheme else '(none)'} is not allowed; "
            "use an http:// or https:// URL"
        )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        why = f" ({exc})" if shown == url else ""  # the parser's words may quote a secret
        raise UnsafeSourceError(f"{shown} is not a valid URL{why}; check it") from exc
    host = parsed.host
    if not host:
        raise UnsafeSourceError(f"{shown} has no host; give a full http(s) URL")
    port = parsed.port or (443 if scheme == "https" else 80)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise DownloadError(
            f"cannot resolve host {host!r} of {shown} ({exc}); check the URL"
        ) from exc
    if not addresses:
        raise DownloadError(f"host {host!r} of {shown} resolves to no address; check the URL")
    if not allow_private:
        for address in addresses:
            if not _is_public_address(address):
                raise UnsafeSourceError(
                    f"{shown}: host {host!r} resolves to non-public address {address}; refused "
                    "(set allow_private_urls to fetch internal URLs)"
                )
    return addresses


@dataclass
class _Answer:
    """What one request produced: a redirect target, or a saved body and its type."""

    location: str | None = None
    content_type: str = ""


def _open_url(
    url: str,
    glob: str | None,
    limits: SourceLimits,
    session: _Session,
    stack: contextlib.ExitStack,
) -> SourceListing:
    shown = redact_url(url)
    tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="milvus-rag-")))
    target = tmpdir / "download"
    final_url, ctype = _download(url, target, limits)
    with open(target, "rb") as handle:
        head = handle.read(4)
    name, suffix = _url_file_name(final_url)
    zip_document = (
        suffix in _ZIP_DOCUMENT_SUFFIXES or _DOCUMENT_TYPES.get(ctype) in _ZIP_DOCUMENT_SUFFIXES
    )
    if head in _ZIP_MAGIC and not zip_document:
        archive = _open_zip(target, shown, stack)
        files = _zip_files(archive, shown, shown, limits, session)
        return _listing(shown, "url", files, glob, shown)
    content = ctype or "none"
    if suffix == ".zip":
        raise DownloadError(
            f"{shown} did not return a zip archive (Content-Type: {content}); check the URL"
        )
    if suffix in _DOCUMENT_SUFFIXES or ctype in _DOCUMENT_TYPES:
        if suffix not in _DOCUMENT_SUFFIXES:
            name = (name if name != "index.html" else "index") + _DOCUMENT_TYPES[ctype]
        item = _disk_file(target, name, shown, target.stat().st_size, limits, session)
        return _listing(shown, "url", [item], glob, shown)
    raise DownloadError(
        f"{shown} did not return a zip archive or a supported document (Content-Type: {content})"
    )


def _url_file_name(url: str) -> tuple[str, str]:
    """The file name a downloaded document gets: the last URL path segment."""
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    segment = segment.replace("\\", "/").rsplit("/", 1)[-1].replace("\0", "")
    if segment in ("", ".", ".."):
        segment = "index.html"
    return segment, os.path.splitext(segment)[1].lower()


class _Deadline:
    """The time budget of a whole download: every connection, read and redirect.

    Each request gets the remaining time as its timeouts, and a watchdog shuts the
    request's sockets when the budget runs out, so a server that drips bytes (each
    read well within a read timeout) cannot stretch the download.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._streams: list[Any] = []
        self._fired = False
        self._finished = False
        self._timer = threading.Timer(min(seconds, threading.TIMEOUT_MAX), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._finished = True  # the sockets may be closed and their numbers reused
        self._timer.cancel()

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self._end

    def timeout(self, url: str) -> httpx.Timeout:
        """The timeouts of the next request: what is left of the budget."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise self.error(url)
        return httpx.Timeout(left)

    def error(self, url: str) -> DownloadError:
        return DownloadError(
            f"{redact_url(url)} timed out after {self.seconds:g} s (download_timeout bounds "
            "the whole download, redirects included); check the URL or raise download_timeout"
        )

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: remember each new connection's stream."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            with self._lock:
                self._streams.append(info.get("return_value"))
                if self._fired and not self._finished:
                    self._shut_down()

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._fired = True
            self._shut_down()

    def _shut_down(self) -> None:
        """Shut the sockets down: a read blocked in another thread returns at once."""
        for stream in self._streams:
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is None or sock.fileno() < 0:
                continue
            with (
                contextlib.suppress(OSError),
                socket.fromfd(sock.fileno(), sock.family, sock.type) as dup,
            ):
                dup.shutdown(socket.SHUT_RDWR)


def _download(url: str, target: Path, limits: SourceLimits) -> tuple[str, str]:
    """Download ``url`` to ``target``, following redirects by hand; return (final URL, type)."""
    current = url
    with (
        _Deadline(limits.download_timeout) as deadline,
        httpx.Client(follow_redirects=False, trust_env=False) as client,
    ):
        for _ in range(_MAX_REDIRECTS + 1):
            addresses = check_url_allowed(current, limits.allow_private_urls)
            answer = _fetch(client, current, addresses, target, limits, deadline)
            if answer.location is None:
                return current, answer.content_type
            current = str(httpx.URL(current).join(answer.location))
    raise DownloadError(f"{redact_url(url)} redirected more than {_MAX_REDIRECTS} times; refused")


def _fetch(
    client: httpx.Client,
    url: str,
    addresses: list[str],
    target: Path,
    limits: SourceLimits,
    deadline: _Deadline,
) -> _Answer:
    """GET ``url`` with the connection pinned to one of the checked ``addresses``."""
    shown = redact_url(url)
    parsed = httpx.URL(url)
    headers = {"Host": parsed.netloc.decode("ascii"), "Accept-Encoding": "identity"}
    extensions: dict[str, Any] = {"trace": deadline.trace}
    if parsed.scheme == "https":
        extensions["sni_hostname"] = parsed.host
    last_error: httpx.ConnectError | None = None
    for address in addresses:
        pinned = parsed.copy_with(host=address)
        try:
            with client.stream(
                "GET",
                pinned,
                headers=headers,
                extensions=extensions,
                timeout=deadline.timeout(url),
            ) as response:
                answer = _save(response, shown, target, limits)
        except httpx.ConnectError as exc:
            if deadline.expired:
                raise deadline.error(url) from exc
            last_error = exc  # try the next address
            continue
        except httpx.TimeoutException as exc:
            raise deadline.error(url) from exc
        except httpx.HTTPError as exc:
            if deadline.expired:  # the watchdog cut the connection
                raise deadline.error(url) from exc
            raise DownloadError(f"downloading {shown} failed: {exc}; try again") from exc
        if deadline.expired:  # cut mid-body: what was saved is incomplete
            raise deadline.error(url)
        return answer
    raise DownloadError(
        f"cannot connect to {shown} ({last_error}); check the URL and your network"
    ) from last_error


def _save(response: httpx.Response, shown: str, target: Path, limits: SourceLimits) -> _Answer:
    status = response.status_code
    if status in _REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise DownloadError(f"{shown} answered HTTP {status} without a Location header")
        return _Answer(location=location)
    if status >= 400:
        raise DownloadError(f"{shown} answered HTTP {status}")
    if not 200 <= status < 300:
        raise DownloadError(f"{shown} answered HTTP {status}; expected 200")
    too_big = DownloadError(
        f"{shown} returned more than max_download_bytes ({limits.max_download_bytes:,} bytes); "
        "refused (raise the limit if you trust it)"
    )
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limits.max_download_bytes:
        raise too_big
    received = 0
    with open(target, "wb") as handle:
        for chunk in response.iter_bytes(_CHUNK):
            received += len(chunk)
            if received > limits.max_download_bytes:
                raise too_big
            handle.write(chunk)
    ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return _Answer(content_type=ctype)
