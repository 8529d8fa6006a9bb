"""`milvus_rag.loaders.downloads`: URL sources through a local HTTP server (statuses, limits,
redirects, deadlines, the SSRF guard, secrets used but never kept).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from milvus_rag.loaders import downloads
from milvus_rag.loaders.formats import parse_file
from milvus_rag.loaders.sources import (
    SourceLimits,
    open_source,
)

from milvus_rag.errors import (
    DownloadError,
    SourceError,
    UnsafeSourceError,
)
from tests.support.sources import LOCAL, _Server, _with_secrets, base, paths

#: For downloads that cannot finish in time whatever the machine's speed: /never answers
#: nothing, /drip* and /hop/* take seconds of deliberate sleeps.
SHORT = SourceLimits(allow_private_urls=True, download_timeout=0.5)


def test_url_temp_file_removed(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[str] = []
    real = downloads.tempfile.TemporaryDirectory

    def spy(*args: object, **kwargs: object) -> object:
        tmp = real(*args, **kwargs)  # type: ignore[call-overload]
        created.append(tmp.name)
        return tmp

    monkeypatch.setattr(downloads.tempfile, "TemporaryDirectory", spy)
    with open_source(f"{base(server)}/page.md", limits=LOCAL) as listing:
        assert listing.kind == "url"
        assert paths(listing) == ["page.md"]
        assert listing.files[0].read_bytes() == b"# Page\n"
        assert Path(created[0]).exists()
    assert not Path(created[0]).exists()


def test_url_document_named_by_content_type(server: _Server) -> None:
    with open_source(f"{base(server)}/readme", limits=LOCAL) as listing:
        assert paths(listing) == ["readme.md"]


@pytest.mark.parametrize(
    ("path", "fmt"), [("/guide.mdx", "markdown"), ("/notes.text", "text"), ("/page.md", "markdown")]
)
def test_url_document_keeps_every_suffix_of_the_format_table(
    server: _Server, path: str, fmt: str
) -> None:
    # Every suffix of the table of formats names a document, whatever the Content-Type:
    # an .mdx URL was stored as guide.mdx.txt and parsed as plain text.
    name = path.lstrip("/")
    with open_source(f"{base(server)}{path}", limits=LOCAL) as listing:
        assert paths(listing) == [name]
        parsed = parse_file(name, listing.files[0].read_bytes())
    assert parsed.format == fmt


def test_url_http_errors(server: _Server) -> None:
    url = base(server)
    with (
        pytest.raises(DownloadError, match=r"/missing answered HTTP 404"),
        open_source(f"{url}/missing", limits=LOCAL),
    ):
        pass
    with (
        pytest.raises(DownloadError, match=r"/never timed out after 0\.5 s"),
        open_source(f"{url}/never", limits=SHORT),
    ):
        pass
    with (
        pytest.raises(DownloadError, match=r"error\.zip did not return a zip archive"),
        open_source(f"{url}/error.zip", limits=LOCAL),
    ):
        pass
    unsupported = r"not return a zip archive or a supported document \(Content-Type: application/octet-stream\)"
    with pytest.raises(DownloadError, match=unsupported), open_source(f"{url}/blob", limits=LOCAL):
        pass


def test_url_size_limit(server: _Server) -> None:
    limits = SourceLimits(allow_private_urls=True, max_download_bytes=1000, download_timeout=60)
    for path in ("/big", "/big-stream"):
        with (
            pytest.raises(DownloadError, match=r"more than max_download_bytes \(1,000 bytes\)"),
            open_source(f"{base(server)}{path}", limits=limits),
        ):
            pass


def test_url_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/docs.zip"
    with (
        pytest.raises(DownloadError, match=rf"cannot connect to {url}"),
        open_source(url, limits=LOCAL),
    ):
        pass


def test_url_redirects(server: _Server) -> None:
    with open_source(f"{base(server)}/redirect", limits=LOCAL) as listing:
        assert listing.kind == "url"
        assert "en/faq/a.md" in paths(listing)
    assert [p for p, _ in server.seen] == ["/redirect", "/docs.zip"]
    with (
        pytest.raises(DownloadError, match="redirected more than 5 times"),
        open_source(f"{base(server)}/loop", limits=LOCAL),
    ):
        pass


def test_ssrf_guard_refuses_before_any_request(server: _Server) -> None:
    with (
        pytest.raises(UnsafeSourceError, match=r"127\.0\.0\.1.*non-public address 127\.0\.0\.1"),
        open_source(f"{base(server)}/docs.zip", limits=SourceLimits(download_timeout=60)),
    ):
        pass
    assert server.seen == []


# --------------------------------------------------------------------------- total download deadline


@pytest.mark.parametrize("path", ["/drip", "/drip-stream", "/drip-headers", "/hop/5"])
def test_download_timeout_bounds_the_whole_download(server: _Server, path: str) -> None:
    """Bytes every 0.1 s (or quick redirects) need not trip a per-read timeout of 0.5 s.

    Without a total deadline each of these downloads succeeds after 1-5 s; with it, each
    times out, however fast or busy the machine (its sleeps alone take over 0.5 s).
    """
    with (
        pytest.raises(DownloadError, match=r"timed out after 0\.5 s .*download_timeout") as err,
        open_source(f"{base(server)}{path}", limits=SHORT),
    ):
        pass
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_download_within_the_deadline_still_works(server: _Server) -> None:
    limits = SourceLimits(allow_private_urls=True, download_timeout=20)
    with open_source(f"{base(server)}/hop/1", limits=limits) as listing:
        assert "en/faq/a.md" in paths(listing)
    with open_source(f"{base(server)}/drip", limits=limits) as listing:
        assert listing.files[0].read_bytes() == b"d" * 40


def test_url_secrets_are_used_but_never_kept(server: _Server) -> None:
    url, shown = _with_secrets(server, "/docs.zip")
    with open_source(url, limits=LOCAL) as listing:
        assert listing.origin == shown
        assert {f.origin for f in listing.files} == {shown}
    # The request itself carried the query (the credentials go as Basic auth).
    assert server.seen[-1][0] == "/docs.zip?X-Amz-Signature=SECRETSIG&X-Amz-Credential=SECRETCRED"

    small = SourceLimits(allow_private_urls=True, download_timeout=60, max_file_bytes=1)
    with open_source(url, limits=small) as listing, pytest.raises(SourceError) as err:
        listing.files[-1].read_bytes()
    assert shown in str(err.value) and "SECRET" not in str(err.value)


@pytest.mark.parametrize("path", ["/missing", "/error.zip", "/blob", "/loop", "/big", "/drip"])
def test_url_errors_never_show_secrets(server: _Server, path: str) -> None:
    url, shown = _with_secrets(server, path)
    timeout = 0.5 if path == "/drip" else 60  # /drip: a timeout, whatever the machine's speed
    limits = SourceLimits(
        allow_private_urls=True, download_timeout=timeout, max_download_bytes=1000
    )
    with pytest.raises(SourceError) as err, open_source(url, limits=limits):
        pass
    assert shown.split("?")[0] in str(err.value) and "SECRET" not in str(err.value)
