"""The ingest progress bar (tqdm on stderr): files and chunks, with an ETA."""

from __future__ import annotations

from typing import Any

from milvus_rag.sync import Progress


class IngestProgress:
    """Context manager exposing :class:`~milvus_rag.sync.Progress` callbacks."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._chunks = 0
        self.callbacks = Progress(
            start=self._start, file_done=self._file_done, chunks_written=self._written
        )

    def __enter__(self) -> IngestProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def _start(self, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="file", desc="ingest", leave=False, dynamic_ncols=True)

    def _file_done(self, path: str) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def _written(self, count: int) -> None:
        self._chunks += count
        if self._bar is not None:
            self._bar.set_postfix(chunks=self._chunks, refresh=False)
