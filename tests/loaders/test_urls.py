"""`milvus_rag.loaders.urls`: what a URL is, the address guard, URLs redacted."""

from __future__ import annotations

import pytest
from milvus_rag.loaders import urls
from milvus_rag.loaders.sources import (
    check_url_allowed,
    is_url,
    open_source,
    redact_url,
)

from milvus_rag.errors import (
    UnsafeSourceError,
)
from tests.support.sources import _Server


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
