"""The parser sandbox: a pool of worker processes, their limits and timeouts.

:func:`run_in_worker` runs a parser (a module-level function, named by module
and qualified name) on one file's bytes in a worker: a fresh interpreter (never
a fork of this possibly multi-threaded process, started with ``python -I``)
that runs with network access disabled (sockets refused, :data:`WORKER_ENV`
set), no core dumps, and exits when its parent dies. Workers are reused across
files and killed when a parse exceeds its timeout, crashes or the worker has
served enough jobs; :func:`shutdown_workers` stops them all (also at exit).
Only plain bytes and JSON cross the process boundary, so a compromised worker
cannot make this process unpickle anything.

The worker loads ``milvus_rag/errors.py``, :mod:`milvus_rag.loaders.parser_base`,
this file and the parser modules by path, never ``milvus_rag/__init__.py`` or
``milvus_rag/loaders/__init__.py`` (which import LangChain); so these modules
import only the standard library, each other and the parser packages (lazily).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any

from milvus_rag.loaders.parser_base import Parser, UnreadableFile, describe, one_line

from milvus_rag.errors import SourceError

__all__ = ["WORKER_ENV", "run_in_worker", "shutdown_workers"]


class _ParserFailure(UnreadableFile):
    """The parser itself broke (unexpected exception or crash), not a verdict on the file."""


class _ParserTimeout(UnreadableFile):
    """The parser ran past ``parse_timeout`` and its worker was killed."""


# Set in the worker's environment (never in this process): opt out of unstructured's
# import-time and per-partition telemetry, its usage banner, and NLTK auto-download
# (unstructured < 0.2x); keep Hugging Face libraries offline.
WORKER_ENV = {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "1",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "AUTO_DOWNLOAD_NLTK": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

# Protocol over the worker's stdin/stdout, each frame an 8-byte big-endian length
# and a payload. Parent -> worker: one JSON init frame ({"path", "modules", "main"}: the
# sys.path, the modules to load by path in order, the one whose _worker_main to run), then
# per job a JSON header ({"module", "qualname"}) and the raw file bytes. Worker -> parent: a JSON ready
# frame, then per job a JSON reply ({"ok", "warnings"} or {"ok", "kind", "error"})
# and, when ok, the UTF-8 text. No pickles, in either direction.

_STARTUP_TIMEOUT = 60.0
_MAX_JOBS_PER_WORKER = 500
_MAX_META_FRAME = 1 << 20
_MAX_WORKER_NOTES = 5

_BOOTSTRAP = """\
import importlib, importlib.util, json, os, sys
_out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
sys.stdout = sys.stderr
_in = sys.stdin.buffer
_init = json.loads(_in.read(int.from_bytes(_in.read(8), "big")))
sys.path[:] = _init["path"]
for _name, _file in _init["modules"]:
    if _file:
        _spec = importlib.util.spec_from_file_location(_name, _file)
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _mod
        _spec.loader.exec_module(_mod)
    else:
        _mod = importlib.import_module(_name)
sys.modules[_init["main"]]._worker_main(_in, _out)
"""


def _send_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(len(payload).to_bytes(8, "big"))
    stream.write(payload)


def _recv_frame(stream: IO[bytes], limit: int | None = None) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "big")
    if limit is not None and size > limit:
        raise EOFError(f"oversized frame ({size} bytes)")
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


def _worker_modules(parsers: Sequence[str]) -> list[tuple[str, str | None]]:
    """(module name, file) for the worker to load: errors, parser base, this module, then
    ``parsers`` in their order (each imports only modules loaded before it; the caller,
    :mod:`~milvus_rag.loaders.formats`, gives its table's, so this module imports none of them)."""
    names = [SourceError.__module__, UnreadableFile.__module__, __name__, *parsers]
    return [(n, getattr(sys.modules.get(n), "__file__", None)) for n in names]


def _reference(parser: Callable[..., Any]) -> tuple[str, str]:
    module = getattr(parser, "__module__", None)
    qualname = getattr(parser, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(f"worker parsers must be module-level functions, got {parser!r}")
    return module, qualname


def _resolve(module: str, qualname: str) -> Callable[[bytes], Any]:
    target: Any = sys.modules.get(module) or importlib.import_module(module)
    for attr in qualname.split("."):
        target = getattr(target, attr)
    return target  # type: ignore[no-any-return]


def _block_network() -> None:
    """Worker only: no DNS and no TCP/UDP connections from any Python code."""
    import socket

    def refuse(*args: object, **kwargs: object) -> Any:
        raise OSError("network access is disabled in the parser worker")

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: Any, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        real_connect(self, address)

    def connect_ex(self: Any, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        return real_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = refuse
    socket.gethostbyname = refuse
    socket.gethostbyname_ex = refuse
    socket.create_connection = refuse


class _NoteCollector(logging.Handler):
    """Worker only: keeps the first few distinct library warnings of the current job."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.notes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            note = one_line(f"{record.name.split('.')[0]}: {record.getMessage()}", 200)
        except Exception:
            return
        if note not in self.notes and len(self.notes) < _MAX_WORKER_NOTES:
            self.notes.append(note)


def _watch_parent(parent: int) -> None:
    import time

    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            os._exit(3)


def _worker_main(inp: IO[bytes], out: IO[bytes]) -> None:
    """Worker entry point (run by _BOOTSTRAP in a fresh interpreter)."""
    if hasattr(os, "getppid"):
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    for key, value in WORKER_ENV.items():
        os.environ[key] = value
    _block_network()
    collector = _NoteCollector()
    logging.getLogger().addHandler(collector)
    for warm in ("pypdf", "defusedxml.ElementTree"):
        with contextlib.suppress(ImportError):
            importlib.import_module(warm)
    _send_frame(out, b'{"ready": true}')
    out.flush()
    while True:
        header = _recv_frame(inp)
        data = _recv_frame(inp) if header is not None else None
        if header is None or data is None:
            return
        collector.notes = []
        body = b""
        try:
            request = json.loads(header)
            parser = _resolve(request["module"], request["qualname"])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                text, notes = parser(data)
            extra = [f"{w.category.__name__}: {w.message}" for w in caught[:_MAX_WORKER_NOTES]]
            all_notes = list(dict.fromkeys([*notes, *collector.notes, *map(one_line, extra)]))
            reply: dict[str, Any] = {"ok": True, "warnings": all_notes[: 2 * _MAX_WORKER_NOTES]}
            body = str(text).encode("utf-8", "replace")
            del text
        except UnreadableFile as exc:
            reply = {"ok": False, "kind": "unreadable", "error": one_line(exc)}
        except MemoryError:
            reply = {"ok": False, "kind": "failure", "error": "out of memory while parsing"}
        except RecursionError:
            reply = {"ok": False, "kind": "unreadable", "error": "document nested too deeply"}
        except Exception as exc:
            reply = {"ok": False, "kind": "failure", "error": describe(exc)}
        del data
        _send_frame(out, json.dumps(reply).encode("utf-8"))
        if reply["ok"]:
            _send_frame(out, body)
        out.flush()
        del body


class _WorkerGone(Exception):
    pass


def _run_with_deadline(action: Callable[[], Any], timeout: float | None) -> tuple[bool, Any]:
    """Run ``action`` in a helper thread; (finished?, result). Re-raises its exception."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = action()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="parser-worker-io", daemon=True)
    thread.start()
    thread.join(None if timeout is None else min(timeout, threading.TIMEOUT_MAX))
    if thread.is_alive():
        return False, None
    if "error" in box:
        raise box["error"]
    return True, box.get("result")


class _Worker:
    """One sandbox interpreter, reused across jobs until it times out, crashes or ages."""

    def __init__(self, parsers: Sequence[str]) -> None:
        self.jobs = 0
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        extra: dict[str, Any] = {}
        if os.name == "posix":
            extra["start_new_session"] = True
        elif hasattr(subprocess, "CREATE_NEW_PROCESS_GROUP"):
            extra["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOTSTRAP],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                close_fds=True,
                **extra,
            )
        except OSError as exc:
            self._stderr.close()
            raise _ParserFailure(f"cannot start the parser worker ({describe(exc)})") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        paths = [p for p in sys.path if isinstance(p, str)]
        modules = _worker_modules(parsers)
        init = json.dumps({"path": paths, "modules": modules, "main": __name__}).encode()

        def handshake() -> bytes | None:
            _send_frame(self._in, init)
            self._in.flush()
            return _recv_frame(self._out, _MAX_META_FRAME)

        try:
            finished, ready = _run_with_deadline(handshake, _STARTUP_TIMEOUT)
        except BaseException:
            self.kill()
            raise
        if not finished or ready is None:
            reason = self._death_reason() if finished else "did not start in time"
            self.kill()
            raise _ParserFailure(f"parser worker failed to start: {reason}")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, module: str, qualname: str, data: bytes, timeout: float) -> dict[str, Any]:
        header = json.dumps({"module": module, "qualname": qualname}).encode()

        def exchange() -> dict[str, Any]:
            _send_frame(self._in, header)
            _send_frame(self._in, data)
            self._in.flush()
            meta = _recv_frame(self._out, _MAX_META_FRAME)
            if meta is None:
                raise _WorkerGone()
            reply: dict[str, Any] = json.loads(meta)
            if reply.get("ok"):
                body = _recv_frame(self._out)
                if body is None:
                    raise _WorkerGone()
                reply["text"] = body.decode("utf-8", "replace")
            return reply

        self.jobs += 1
        try:
            finished, reply = _run_with_deadline(exchange, timeout)
        except (_WorkerGone, OSError, EOFError, ValueError):
            reason = self._death_reason()
            self.kill()
            raise _ParserFailure(f"parser process crashed ({reason})") from None
        except BaseException:
            self.kill()
            raise
        if not finished:
            self.kill()
            raise _ParserTimeout(f"parser timed out after {timeout:g} s")
        return reply  # type: ignore[no-any-return]

    def _death_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "protocol error"
        if code < 0:
            try:
                what = signal.Signals(-code).name
            except ValueError:
                what = f"signal {-code}"
            reason = f"killed by {what}" + (" - out of memory?" if what == "SIGKILL" else "")
        else:
            reason = f"exit code {code}"
        try:
            self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, self._stderr.tell() - 2000))
            tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            tail = []
        return f"{reason}: {one_line(tail[-1], 200)}" if tail else reason

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except (ProcessLookupError, PermissionError, OSError):
                pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self._in, self._out, self._stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()

    def close(self) -> None:
        """Polite stop: EOF on stdin ends the worker's loop; kill if it lingers."""
        with contextlib.suppress(OSError, ValueError):
            self._in.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()


_pool_lock = threading.Lock()
_idle: list[_Worker] = []
_workers: set[_Worker] = set()


def _max_idle() -> int:
    return max(2, os.cpu_count() or 2)


def _acquire_worker(parsers: Sequence[str]) -> _Worker:
    with _pool_lock:
        while _idle:
            worker = _idle.pop()
            if worker.alive:
                return worker
            _workers.discard(worker)
            worker.kill()
    worker = _Worker(parsers)
    with _pool_lock:
        _workers.add(worker)
    return worker


def _release_worker(worker: _Worker) -> None:
    with _pool_lock:
        keep = worker.alive and worker.jobs < _MAX_JOBS_PER_WORKER and len(_idle) < _max_idle()
        if keep:
            _idle.append(worker)
            return
        _workers.discard(worker)
    worker.close()


def _discard_worker(worker: _Worker) -> None:
    with _pool_lock:
        _workers.discard(worker)
    worker.kill()


def shutdown_workers() -> None:
    """Stop every worker this process started (also run at exit)."""
    with _pool_lock:
        workers = list(_workers)
        _workers.clear()
        _idle.clear()
    for worker in workers:
        worker.close()


def _forget_workers_after_fork() -> None:
    # A forked child must not talk to its parent's workers (their pipes are shared).
    global _pool_lock
    _pool_lock = threading.Lock()
    _idle.clear()
    _workers.clear()


atexit.register(shutdown_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def run_in_worker(
    parser: Parser, data: bytes, timeout: float, parsers: Sequence[str] = ()
) -> tuple[str, tuple[str, ...]]:
    """Run ``parser(data)`` in a sandbox worker; UnreadableFile on failure or timeout.

    A new worker loads ``parsers`` (module names, in order) up front; without them, the
    parser's own module.
    """
    module, qualname = _reference(parser)
    worker = _acquire_worker(tuple(parsers) or (module,))
    try:
        reply = worker.run(module, qualname, data, timeout)
    except BaseException:
        _discard_worker(worker)
        raise
    _release_worker(worker)
    if not reply.get("ok"):
        error = one_line(reply.get("error") or "unknown parser error")
        if reply.get("kind") == "unreadable":
            raise UnreadableFile(error)
        raise _ParserFailure(f"parser failed: {error}")
    notes = tuple(one_line(n) for n in reply.get("warnings") or ())
    return reply["text"], notes
