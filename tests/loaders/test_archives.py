"""`milvus_rag.loaders.archives`: zip listing and reading, and the zip guards (slip, bombs, limits)."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from milvus_rag.loaders.sources import (
    SourceLimits,
    open_source,
)

from milvus_rag.errors import (
    SourceError,
    UnsafeSourceError,
)
from tests.support.sources import LOCAL, _Server, base, make_zip, paths


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


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


def test_url_zip(server: _Server) -> None:
    url = f"{base(server)}/docs.zip"
    with open_source(url, limits=LOCAL) as listing:
        assert (listing.kind, listing.origin) == ("url", url)
        assert paths(listing) == ["b.txt", "en/faq/a.md"]
        assert listing.files[1].origin == url
        assert listing.files[1].read_bytes() == b"# A\n"
    with pytest.raises(SourceError, match="closed"):
        listing.files[0].read_bytes()
