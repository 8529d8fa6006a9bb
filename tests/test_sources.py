"""Tests for milvus_rag.loaders.sources: folders, files, zip guards, URL downloads and SSRF."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from milvus_rag.loaders import downloads, sources, urls
from milvus_rag.loaders.formats import parse_file
from milvus_rag.loaders.sources import (
    SourceLimits,
    check_url_allowed,
    glob_match,
    is_url,
    open_source,
    redact_url,
)

from milvus_rag.errors import (
    DownloadError,
    NoFilesMatchedError,
    SourceError,
    UnsafeSourceError,
)

#: Loopback allowed; a timeout no answer of the local server comes near, however busy the
#: machine (no test depends on timing: timeouts are tested with servers that never answer).
LOCAL = SourceLimits(allow_private_urls=True, download_timeout=60)
#: For downloads that cannot finish in time whatever the machine's speed: /never answers
#: nothing, /drip* and /hop/* take seconds of deliberate sleeps.
SHORT = SourceLimits(allow_private_urls=True, download_timeout=0.5)


# --------------------------------------------------------------------------- helpers


def make_tree(root: Path) -> Path:
    files = {
        "en/faq/product_faq.md": "# Product\n",
        "en/faq/operational_faq.md": "# Ops\n",
        "en/faq/sub/deep.md": "# Deep\n",
        "en/guide/intro.txt": "intro\n",
        "zh/readme.md": "# zh\n",
        "top.md": "# top\n",
        ".git/config.md": "not a doc\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def paths(listing: sources.SourceListing) -> list[str]:
    return [f.path for f in listing.files]


# --------------------------------------------------------------------------- globs and URLs


def test_glob_match_rules() -> None:
    assert glob_match("en/faq/x.md", "en/faq/*.md")
    assert not glob_match("en/faq/sub/x.md", "en/faq/*.md")
    assert glob_match("x.md", "**/*.md")
    assert glob_match("a/b/c/x.md", "**/*.md")
    assert glob_match("a/b", "a/**/b")
    assert glob_match("a/x/y/b", "a/**/b")
    assert glob_match("a/x/y", "a/**")
    assert glob_match("anything/at/all", "**")
    assert glob_match("en/faq/x.md", "./en/faq/*.md")
    assert glob_match("f1.md", "f?.md")
    assert not glob_match("a/b.md", "a?b.md")
    assert glob_match("b.md", "[abc].md")
    assert not glob_match("d.md", "[abc].md")
    assert glob_match("d.md", "[!abc].md")
    assert not glob_match("a/b", "a[/]b")
    assert glob_match("x[.md", "x[.md")
    assert not glob_match("x.MD", "*.md")


def test_is_url() -> None:
    assert is_url("http://example.com/a.zip")
    assert is_url("https://example.com")
    assert is_url("file:///etc/passwd")
    assert is_url("ftp://example.com/x")
    assert is_url("gopher://example.com")
    assert not is_url("./docs")
    assert not is_url("C:\\docs")
    assert not is_url("docs.zip")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
    ],
)
def test_guard_refuses_internal_addresses(url: str) -> None:
    with pytest.raises(UnsafeSourceError, match="non-public address"):
        check_url_allowed(url, allow_private=False)


def test_guard_allows_public_and_private_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_url_allowed("https://93.184.216.34/x.zip") == ["93.184.216.34"]
    assert check_url_allowed("http://10.0.0.1/", allow_private=True) == ["10.0.0.1"]
    # Refused when ANY address of the host is internal.
    monkeypatch.setattr(urls, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.1"])
    with pytest.raises(UnsafeSourceError, match=r"'mixed\.test'.*10\.0\.0\.1"):
        check_url_allowed("http://mixed.test/")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.zip",
        "gopher://example.com/x",
        "data:text/plain,x",
    ],
)
def test_unsupported_schemes_refused(url: str) -> None:
    with pytest.raises(UnsafeSourceError, match="not allowed"), open_source(url):
        pass


# --------------------------------------------------------------------------- folders and files


def test_folder_listing_and_globs(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "docs")
    with open_source(root) as listing:
        assert listing.kind == "folder"
        assert listing.origin == str(root.resolve())
        assert paths(listing) == [
            "en/faq/operational_faq.md",
            "en/faq/product_faq.md",
            "en/faq/sub/deep.md",
            "en/guide/intro.txt",
            "top.md",
            "zh/readme.md",
        ]
        first = listing.files[0]
        assert first.size == len("# Ops\n")
        assert first.origin == listing.origin
        assert first.read_bytes() == b"# Ops\n"
    with open_source(str(root), glob="en/faq/*.md") as listing:
        assert paths(listing) == ["en/faq/operational_faq.md", "en/faq/product_faq.md"]
    with open_source(root, glob="**/*.md") as listing:
        assert len(listing.files) == 5
        assert "top.md" in paths(listing)


def test_no_match_and_missing(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "docs")
    with (
        pytest.raises(NoFilesMatchedError, match=r"no file in .*docs matches --glob '\*\.pdf'"),
        open_source(root, glob="*.pdf"),
    ):
        pass
    with (
        pytest.raises(SourceError, match=r"source .*nope does not exist"),
        open_source(tmp_path / "nope"),
    ):
        pass


def test_folder_skips_symlinks_outside(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "docs")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.md").write_text("secret")
    os.symlink(outside / "key.md", root / "leak.md")
    os.symlink(outside, root / "leakdir")
    os.symlink(root / "top.md", root / "alias.md")
    with open_source(root) as listing:
        names = paths(listing)
    assert "leak.md" not in names
    assert not any(n.startswith("leakdir") for n in names)
    assert "alias.md" in names


def test_single_file_and_size_limit(tmp_path: Path) -> None:
    doc = tmp_path / "notes.md"
    doc.write_text("hello world")
    with open_source(doc) as listing:
        assert listing.kind == "file"
        assert paths(listing) == ["notes.md"]
        assert listing.files[0].read_bytes() == b"hello world"
    with pytest.raises(NoFilesMatchedError), open_source(doc, glob="*.txt"):
        pass
    with (
        open_source(doc, limits=SourceLimits(max_file_bytes=5)) as listing,
        pytest.raises(SourceError, match=r"notes\.md is 11 bytes, more than max_file_bytes"),
    ):
        listing.files[0].read_bytes()
    with pytest.raises(SourceError, match="closed"):
        listing.files[0].read_bytes()


# --------------------------------------------------------------------------- zip archives


def test_zip_listing_and_read(tmp_path: Path) -> None:
    archive = tmp_path / "docs.zip"
    archive.write_bytes(
        make_zip({"en/": b"", "en/faq/a.md": b"# A\n", "en/faq/b.md": b"# B\n", "x.txt": b"x"})
    )
    before = snapshot(tmp_path)
    with open_source(archive, glob="en/faq/*.md") as listing:
        assert listing.kind == "zip"
        assert listing.origin == str(archive.resolve())
        assert paths(listing) == ["en/faq/a.md", "en/faq/b.md"]
        assert listing.files[1].read_bytes() == b"# B\n"
    assert snapshot(tmp_path) == before  # nothing extracted


def test_zip_detected_by_magic_bytes(tmp_path: Path) -> None:
    archive = tmp_path / "docs.bin"
    archive.write_bytes(make_zip({"a.md": b"a"}))
    with open_source(archive) as listing:
        assert listing.kind == "zip"


def test_faq_zip_fixture(faq_zip: Path) -> None:
    with open_source(faq_zip, glob="en/faq/*.md") as listing:
        assert len(listing.files) == 4
        assert all(f.read_bytes() for f in listing.files)


def _symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ok.md", b"ok")
        link = zipfile.ZipInfo("link.md")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "blob"),
    [
        ("../evil.txt", make_zip({"ok.md": b"ok", "../evil.txt": b"x"})),
        ("/abs.txt", make_zip({"/abs.txt": b"x"})),
        ("a/../../b", make_zip({"a/../../b": b"x"})),
        ("C:/win.txt", make_zip({"C:/win.txt": b"x"})),
        ("\\\\srv\\x.txt", make_zip({"\\srv\\x.txt": b"x"})),
        ("link.md", _symlink_zip()),
    ],
)
def test_zip_slip_refused(tmp_path: Path, name: str, blob: bytes) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "evil.zip"
    archive.write_bytes(blob)
    before = snapshot(tmp_path)
    with (
        pytest.raises(UnsafeSourceError, match=r"archive .*evil\.zip: entry .*refused"),
        open_source(archive),
    ):
        pass
    assert snapshot(tmp_path) == before


def test_zip_bomb_ratio_refused_before_decompression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("zeros.bin", bytes(50 << 20))

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("a member was decompressed")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_open)
    with (
        pytest.raises(UnsafeSourceError, match=r"zeros\.bin.*ratio \d+ > max_archive_ratio 200"),
        open_source(archive),
    ):
        pass


def test_zip_total_size_and_count_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "big.zip"
    archive.write_bytes(make_zip({f"f{i}.md": b"x" * 1000 for i in range(5)}))
    monkeypatch.setattr(zipfile.ZipFile, "open", None)  # any decompression would fail
    with (
        pytest.raises(UnsafeSourceError, match=r"5,000 bytes uncompressed.*max_archive_bytes"),
        open_source(archive, limits=SourceLimits(max_archive_bytes=4000)),
    ):
        pass
    with (
        pytest.raises(UnsafeSourceError, match=r"5 entries, more than max_archive_files \(4\)"),
        open_source(archive, limits=SourceLimits(max_archive_files=4)),
    ):
        pass


def test_corrupt_zip(tmp_path: Path) -> None:
    blob = make_zip({"a.md": b"hello " * 100})
    truncated = tmp_path / "broken.zip"
    truncated.write_bytes(blob[: len(blob) // 2])
    with (
        pytest.raises(SourceError, match=r"broken\.zip is not a readable zip archive"),
        open_source(truncated),
    ):
        pass
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip at all")
    with pytest.raises(SourceError, match="not a readable zip archive"), open_source(fake):
        pass


def test_zip_member_crc_error_and_encryption(tmp_path: Path) -> None:
    payload = b"The quick brown fox jumps over the lazy dog."
    blob = bytearray(make_zip({"a.md": payload}, compression=zipfile.ZIP_STORED))
    at = blob.index(payload)
    blob[at] ^= 0xFF
    archive = tmp_path / "crc.zip"
    archive.write_bytes(bytes(blob))
    with (
        open_source(archive) as listing,
        pytest.raises(SourceError, match=r"entry 'a\.md' is corrupt"),
    ):
        listing.files[0].read_bytes()

    # zipfile cannot write encrypted entries: set the "encrypted" flag bit by hand
    # in the local header (offset 6) and the central directory record (offset 8).
    blob = bytearray(make_zip({"secret.md": b"ciphertext"}, compression=zipfile.ZIP_STORED))
    blob[blob.index(b"PK\x03\x04") + 6] |= 0x1
    blob[blob.index(b"PK\x01\x02") + 8] |= 0x1
    archive.write_bytes(bytes(blob))
    with (
        open_source(archive) as listing,
        pytest.raises(SourceError, match=r"entry 'secret\.md' is encrypted"),
    ):
        listing.files[0].read_bytes()


def test_zip_member_larger_than_max_file_bytes(tmp_path: Path) -> None:
    archive = tmp_path / "docs.zip"
    archive.write_bytes(make_zip({"big.md": b"y" * 100, "small.md": b"s"}))
    with open_source(archive, limits=SourceLimits(max_file_bytes=10)) as listing:
        big, small = listing.files
        with pytest.raises(SourceError, match=r"entry 'big\.md' is 100 bytes"):
            big.read_bytes()
        assert small.read_bytes() == b"s"


# --------------------------------------------------------------------------- URLs

ZIP_BODY = make_zip({"en/faq/a.md": b"# A\n", "b.txt": b"b"})


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host", "")))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route()

    def _drip(self, body: bytes, length: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for byte in body:  # each read well within the read timeout
            time.sleep(0.1)
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _drip_headers(self) -> None:
        head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n" + b"X-Pad: " + b"p" * 40
        for byte in head + b"\r\n\r\nlate":
            time.sleep(0.1)
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/hop/"):  # a chain of redirects, each answered quickly enough
            time.sleep(0.2)
            left = int(path.rsplit("/", 1)[1])
            self._redirect(f"/hop/{left - 1}" if left else "/docs.zip")
        elif path == "/drip":
            self._drip(b"d" * 40, length=True)
        elif path == "/drip-stream":
            self._drip(b"d" * 40, length=False)
        elif path == "/drip-headers":
            self._drip_headers()
        elif path == "/docs.zip":
            self._send(200, ZIP_BODY, "application/zip")
        elif path == "/page.md":
            self._send(200, b"# Page\n", "text/markdown; charset=utf-8")
        elif path == "/guide.mdx":  # servers often call .mdx and .text plain text
            self._send(200, b"# Guide\n\nMDX body.\n", "text/plain")
        elif path == "/notes.text":
            self._send(200, b"Plain notes.\n", "application/octet-stream")
        elif path == "/readme":
            self._send(200, b"# Readme\n", "text/markdown")
        elif path == "/error.zip":
            self._send(200, b"<html>Not found</html>", "text/html")
        elif path == "/blob":
            self._send(200, os.urandom(2048), "application/octet-stream")
        elif path == "/big":
            self._send(200, b"z" * 5000, "text/plain")
        elif path == "/big-stream":
            self._send(200, b"z" * 5000, "text/plain", length=False)
        elif path == "/never":  # accepts the request, never answers
            self.server.released.wait()
        elif path == "/redirect":
            self._redirect("/docs.zip")
        elif path == "/loop":
            self._redirect("/loop")
        elif path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data")
        else:
            self._send(404, b"missing", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    seen: list[tuple[str, str]]
    released: threading.Event  # set at shutdown: /never's handlers return


@pytest.fixture(scope="module")
def http_server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen = []
    httpd.released = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield httpd
    finally:
        httpd.released.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(http_server: _Server) -> _Server:
    """The local HTTP server with its request log cleared."""
    http_server.seen.clear()
    return http_server


def base(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_url_zip(server: _Server) -> None:
    url = f"{base(server)}/docs.zip"
    with open_source(url, limits=LOCAL) as listing:
        assert (listing.kind, listing.origin) == ("url", url)
        assert paths(listing) == ["b.txt", "en/faq/a.md"]
        assert listing.files[1].origin == url
        assert listing.files[1].read_bytes() == b"# A\n"
    with pytest.raises(SourceError, match="closed"):
        listing.files[0].read_bytes()


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


def test_ssrf_guard_runs_after_each_redirect(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'public.test' is made to look public and to resolve to the local server.

    The server redirects to the cloud metadata address; the guard must refuse
    that hop before connecting (connecting would time out or reach nothing).
    """
    real_resolve = urls._resolve
    real_public = urls._is_public_address
    monkeypatch.setattr(
        urls,
        "_resolve",
        lambda host, port: ["127.0.0.1"] if host == "public.test" else real_resolve(host, port),
    )
    monkeypatch.setattr(urls, "_is_public_address", lambda ip: ip == "127.0.0.1" or real_public(ip))
    port = server.server_address[1]
    with (
        pytest.raises(UnsafeSourceError, match=r"169\.254\.169\.254.*non-public address"),
        open_source(f"http://public.test:{port}/to-metadata"),
    ):
        pass
    # One request reached the server, pinned to the checked address with the original Host.
    assert server.seen == [("/to-metadata", f"public.test:{port}")]


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


# --------------------------------------------------------------------------- secrets in URLs


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://host/doc.md", "http://host/doc.md"),
        ("https://user:pw@host:8443/a/doc.md", "https://host:8443/a/doc.md"),
        (
            "http://u:pw@host/d.zip?X-Amz-Signature=SECRET&v=2#frag",
            "http://host/d.zip?X-Amz-Signature=&v=",
        ),
        ("http://host/d.md?SECRET", "http://host/d.md"),
        ("http://host/d.md#SECRET", "http://host/d.md"),
        ("http://u:p#SECRET@host/d.md", "http://host/d.md"),
        ("http://u:p?SECRET@host", "http://host"),
        ("http://host?token=SECRET", "http://host?token="),
        ("http://[::1]:80/x?a=SECRET", "http://[::1]:80/x?a="),
        ("ftp://u:SECRET@host/x", "ftp://host/x"),
        ("http://[::1/x?a=SECRET", "http://[::1/x?a="),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


SIGNED = "?X-Amz-Signature=SECRETSIG&X-Amz-Credential=SECRETCRED#SECRETFRAG"


def _with_secrets(server: _Server, path: str) -> tuple[str, str]:
    port = server.server_address[1]
    url = f"http://alice:SECRETPW@127.0.0.1:{port}{path}{SIGNED}"
    return url, f"http://127.0.0.1:{port}{path}?X-Amz-Signature=&X-Amz-Credential="


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


def test_refused_url_errors_never_show_secrets(server: _Server) -> None:
    url, _ = _with_secrets(server, "/docs.zip")
    for candidate, limits in [
        (url, SourceLimits(download_timeout=60)),  # private address refused
        (url.replace("http:", "ftp:", 1), LOCAL),
        ("http://alice:SECRETPW@127.0.0.1:bad/x?k=SECRET", LOCAL),
        ("http://alice:SECRETPW@no-such-host.invalid/x?k=SECRET", LOCAL),
    ]:
        with pytest.raises(SourceError) as err, open_source(candidate, limits=limits):
            pass
        assert "SECRET" not in str(err.value), str(err.value)
