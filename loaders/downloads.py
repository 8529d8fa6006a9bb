"""A URL downloaded as a source: redirects followed by hand (each hop checked by
:func:`~milvus_rag.loaders.urls.check_url_allowed`, the connection pinned to the checked
address), ``download_timeout`` over the whole download, the body size-capped and saved to a
temporary file; then listed as a zip archive or one document."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx
from milvus_rag.loaders.archives import ZIP_BASED_DOCUMENTS, ZIP_MAGIC, open_zip, zip_files
from milvus_rag.loaders.folders import disk_file
from milvus_rag.loaders.formats import CONTENT_TYPE_SUFFIXES, SUPPORTED_SUFFIXES
from milvus_rag.loaders.listing import Session, SourceListing, make_listing
from milvus_rag.loaders.urls import check_url_allowed, redact_url

from milvus_rag.errors import DownloadError

if TYPE_CHECKING:
    from milvus_rag.loaders.sources import SourceLimits

__all__ = ["open_url"]

_MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# From the table of formats: the suffixes of a document, and Content-Type -> the suffix
# given to a downloaded document whose URL names none.
_DOCUMENT_SUFFIXES = SUPPORTED_SUFFIXES
_DOCUMENT_TYPES = CONTENT_TYPE_SUFFIXES
# Supported formats that are zip containers: a download of one is a document, not an archive.
_ZIP_DOCUMENT_SUFFIXES = _DOCUMENT_SUFFIXES & ZIP_BASED_DOCUMENTS


@dataclass
class _Answer:
    """What one request produced: a redirect target, or a saved body and its type."""

    location: str | None = None
    content_type: str = ""


def open_url(
    url: str,
    glob: str | None,
    limits: SourceLimits,
    session: Session,
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
    if head in ZIP_MAGIC and not zip_document:
        archive = open_zip(target, shown, stack)
        files = zip_files(archive, shown, shown, limits, session)
        return make_listing(shown, "url", files, glob, shown)
    content = ctype or "none"
    if suffix == ".zip":
        raise DownloadError(
            f"{shown} did not return a zip archive (Content-Type: {content}); check the URL"
        )
    if suffix in _DOCUMENT_SUFFIXES or ctype in _DOCUMENT_TYPES:
        if suffix not in _DOCUMENT_SUFFIXES:
            name = (name if name != "index.html" else "index") + _DOCUMENT_TYPES[ctype]
        item = disk_file(target, name, shown, target.stat().st_size, limits, session)
        return make_listing(shown, "url", [item], glob, shown)
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
