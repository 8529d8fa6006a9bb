"""`milvus_rag.loaders.sources`: opening a source (file, folder, zip, URL) within its limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from milvus_rag.loaders.sources import (
    SourceLimits,
    open_source,
)

from milvus_rag.errors import (
    NoFilesMatchedError,
    SourceError,
    UnsafeSourceError,
)
from milvus_rag.settings import load_settings
from tests.support.sources import LOCAL, _Server, _with_secrets, make_tree, paths


def test_source_limits_from_settings_takes_every_limit() -> None:
    import dataclasses

    from milvus_rag.loaders.sources import SourceLimits

    settings = load_settings(
        config_path=None,
        overrides={"ingest": {"max_file_bytes": 123, "download_timeout": 7.5}},
        environ={},
    )
    limits = SourceLimits.from_settings(settings.ingest)
    assert (limits.max_file_bytes, limits.download_timeout) == (123, 7.5)
    for field in dataclasses.fields(SourceLimits):
        assert getattr(limits, field.name) == getattr(settings.ingest, field.name)


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
