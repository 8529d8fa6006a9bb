"""Upload jobs: ingests that run one at a time on a worker thread of the server process
(the one writer of a Milvus Lite file), with their state kept in memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from milvus_rag.errors import MilvusRAGError
from milvus_rag.redaction import Redactor
from milvus_rag.telemetry import Telemetry

__all__ = ["Job", "Jobs"]


@dataclass
class Job:
    """One upload's ingest: its state and, once done, its report or error."""

    id: str
    owner: str
    scope: str
    source: str
    status: str = "queued"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "scope": self.scope,
            "source": self.source,
        }
        if self.result is not None:
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


class Jobs:
    """The app's upload jobs: run one at a time on a worker thread, kept in memory (the
    last ``keep`` of them)."""

    def __init__(
        self, redactor: Redactor, telemetry: Telemetry | None = None, keep: int = 1000
    ) -> None:
        self.redactor = redactor
        #: Where the ingests' spans and counters go (the app's; None: nowhere).
        self.telemetry = telemetry or Telemetry()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="milvus-rag-ingest")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.keep = keep

    def start(self, job: Job, work: Callable[[], dict[str, Any]]) -> Job:
        """Queue ``work`` as ``job``; its result (a report) or typed error lands on it."""
        with self._lock:
            self._jobs[job.id] = job
            for old in list(self._jobs)[: max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old]

        def run() -> None:  # a fresh context: the job is not the request's (its own trace)
            job.status = "running"
            try:
                with self.telemetry.active():
                    job.result = work()
                job.status = "done"
            except MilvusRAGError as exc:
                job.error = {"message": self.redactor.redact(exc), "type": type(exc).__name__}
                job.status = "failed"
            except Exception as exc:  # not ours: keep the job's record honest
                job.error = {"message": "internal error", "type": type(exc).__name__}
                job.status = "failed"

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
