"""Files on disk: a folder walked (VCS folders skipped, links leaving the folder ignored) and
a file read with the size cap."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from milvus_rag.loaders.listing import Session, SourceFile, check_file_size

from milvus_rag.errors import SourceError

if TYPE_CHECKING:
    from milvus_rag.loaders.sources import SourceLimits

__all__ = ["disk_file", "walk_folder"]

_VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj", "_darcs", "CVS"})


def walk_folder(
    root: Path, origin: str, limits: SourceLimits, session: Session
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
                            disk_file(Path(real), rel, origin, target.st_size, limits, session)
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
                    files.append(disk_file(Path(entry.path), rel, origin, size, limits, session))
            except OSError:
                continue  # vanished or dangling entry

    walk(root, "")
    return files


def disk_file(
    real: Path, rel: str, origin: str, size: int, limits: SourceLimits, session: Session
) -> SourceFile:
    def read() -> bytes:
        label = f"{origin}: {rel}" if rel != real.name or origin != str(real) else str(real)
        session.ensure_open(label)
        try:
            with open(real, "rb") as handle:
                actual = os.fstat(handle.fileno()).st_size
                check_file_size(label, actual, limits)
                data = handle.read(limits.max_file_bytes + 1)
        except OSError as exc:
            raise SourceError(f"{label} cannot be read: {exc.strerror or exc}") from exc
        check_file_size(label, len(data), limits)
        return data

    return SourceFile(path=rel, size=size, origin=origin, _reader=read)
