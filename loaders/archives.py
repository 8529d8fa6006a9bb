"""Zip archives, never extracted to disk: every entry checked (unsafe names, symlinks, sizes,
entry count, compression ratios) before any member is decompressed; members read with a
cap on their declared size."""

from __future__ import annotations

import contextlib
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from milvus_rag.loaders.listing import Session, SourceFile, check_file_size

from milvus_rag.errors import SourceError, UnsafeSourceError

if TYPE_CHECKING:
    from milvus_rag.loaders.sources import SourceLimits

__all__ = ["ZIP_BASED_DOCUMENTS", "ZIP_MAGIC", "is_zip_file", "open_zip", "zip_files"]

_MIB = 1 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# Formats that are zip containers but are documents in their own right.
ZIP_BASED_DOCUMENTS = frozenset({".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub"})


def is_zip_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return True
    if suffix in ZIP_BASED_DOCUMENTS:
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in ZIP_MAGIC
    except OSError:
        return False


def open_zip(path: Path, label: str, stack: contextlib.ExitStack) -> zipfile.ZipFile:
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


def zip_files(
    archive: zipfile.ZipFile,
    origin: str,
    label: str,
    limits: SourceLimits,
    session: Session,
) -> list[SourceFile]:
    """Validate every entry (names, sizes, ratios) and return the member files."""
    infos = archive.infolist()
    _check_entries(infos, label, limits)
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


def _check_entries(infos: list[zipfile.ZipInfo], label: str, limits: SourceLimits) -> None:
    """Refuse the archive before any member is decompressed: too many entries, an entry
    escaping the root or a symlink, or sizes and ratios past the limits (a zip bomb)."""
    if len(infos) > limits.max_archive_files:
        raise UnsafeSourceError(
            f"archive {label}: {len(infos):,} entries, more than max_archive_files "
            f"({limits.max_archive_files:,}); refused"
        )
    total_size = 0
    total_compressed = 0
    for info in infos:
        _check_entry(info, label, limits)
        total_size += info.file_size
        total_compressed += info.compress_size
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


def _check_entry(info: zipfile.ZipInfo, label: str, limits: SourceLimits) -> None:
    """Refuse one entry: a name escaping the root, a symlink, a ratio past the limit."""
    name = info.filename
    if _unsafe_name(name):
        raise UnsafeSourceError(
            f"archive {label}: entry {name!r} escapes the archive root; refused"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UnsafeSourceError(f"archive {label}: entry {name!r} is a symlink; refused")
    if info.file_size > _MIB:
        ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
        if ratio > limits.max_archive_ratio:
            raise UnsafeSourceError(
                f"archive {label}: entry {name!r} expands {info.compress_size:,} bytes "
                f"to {info.file_size:,} (ratio {ratio:.0f} > max_archive_ratio "
                f"{limits.max_archive_ratio:g}); refused as a possible zip bomb"
            )


def _zip_reader(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    label: str,
    limits: SourceLimits,
    session: Session,
) -> Callable[[], bytes]:
    entry = f"archive {label}: entry {info.filename!r}"

    def read() -> bytes:
        session.ensure_open(entry)
        if info.flag_bits & 0x1:
            raise SourceError(f"{entry} is encrypted; decrypt the archive first")
        check_file_size(entry, info.file_size, limits)
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
