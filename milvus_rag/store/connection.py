"""Opening a Milvus client: connection arguments, Milvus Lite's engines and lock files,
and one-line errors for a locked Lite file or an unreachable server."""

from __future__ import annotations

import errno
import json
import logging
import re
import threading
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import StoreError, StoreLockedError, StoreUnavailableError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.settings import MilvusSettings

__all__ = [
    "connect",
    "connection_args",
    "describe_uri",
    "lite_engine",
    "lite_file_engine",
    "lite_serve_command",
    "reason",
]


def connection_args(milvus: MilvusSettings) -> dict[str, Any]:
    """``MilvusClient`` keyword arguments from the ``milvus`` settings section."""
    args: dict[str, Any] = {"uri": milvus.uri, "timeout": milvus.timeout}
    if milvus.is_lite:
        path = Path(milvus.uri).expanduser()
        args["uri"] = str(path)
    if milvus.token is not None:
        args["token"] = milvus.token.get_secret_value()
    if _clients_share_connections():
        # pymilvus before 2.6.10 gives every client of one URI the same connection, and
        # closing any of them closes it for all: each client gets its own.
        args["alias"] = f"milvus-rag-{uuid.uuid4().hex}"
    return args


def _clients_share_connections() -> bool:
    """True for pymilvus before 2.6.10 (one connection per URI, shared by its clients)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = [int(p) for p in re.findall(r"\d+", version("pymilvus"))[:3]]
    except (PackageNotFoundError, ValueError):
        return False
    return parts < [2, 6, 10]


def describe_uri(milvus: MilvusSettings) -> str:
    """``Milvus Lite database PATH`` or ``Milvus at URI``, for messages."""
    return f"Milvus Lite database {milvus.uri}" if milvus.is_lite else f"Milvus at {milvus.uri}"


def connect(milvus: MilvusSettings) -> MilvusClient:
    """Open a ``MilvusClient``, mapping the usual failures to typed errors.

    A server that refuses the connection fails at once (not after ``milvus.timeout`` of
    gRPC retries). Milvus Lite files are opened one at a time in a process.

    Raises:
        StoreLockedError: the Milvus Lite file is open in another process.
        StoreUnavailableError: the server cannot be reached, or the Lite path is unusable.
    """
    args = connection_args(milvus)
    _quiet_lite_logger()
    if not milvus.is_lite:
        _check_reachable(milvus)
        return _client(milvus, args)
    path = Path(args["uri"])
    if not path.parent.is_dir():
        raise StoreUnavailableError(f"milvus.uri {milvus.uri}: folder {path.parent} does not exist")
    with _LITE_OPENS:
        _check_lite_engine(milvus, path)
        # Checked first on 2.x: its failed open deletes the holder's lock file.
        two = (lite_engine() or "").startswith("2.")
        if two and not _served_here(path) and _lite_file_locked(path):
            raise _connect_error(milvus, RuntimeError("locked"))
        return _client(milvus, args)


#: One Milvus Lite open at a time in this process: while one thread starts a 2.x engine
#: (its POSIX lock taken, the file not yet listed as served here), another thread's lock
#: probe would release that lock, and the open would fail.
_LITE_OPENS = threading.Lock()


def _client(milvus: MilvusSettings, args: dict[str, Any]) -> MilvusClient:
    from pymilvus import MilvusClient

    try:
        with warnings.catch_warnings():
            # Milvus Lite 2.5.1 imports pkg_resources, which warns on every import.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return MilvusClient(**args)
    except Exception as exc:
        raise _connect_error(milvus, exc) from exc


def _check_reachable(milvus: MilvusSettings) -> None:
    """Connect to the server's host and port once (an ``http``, ``https``, ``tcp`` or
    ``grpc`` URI with a port): a refused or unresolvable address is a
    :class:`StoreUnavailableError` now; gRPC would retry it until ``milvus.timeout``."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(milvus.uri)
    try:
        port = parts.port
    except ValueError:  # not a port: pymilvus says what is wrong
        return
    if parts.scheme not in ("http", "https", "tcp", "grpc") or not parts.hostname or not port:
        return
    try:
        with socket.create_connection((parts.hostname, port), timeout=milvus.timeout):
            pass
    except (OSError, UnicodeError) as exc:
        raise _connect_error(milvus, exc) from exc


def lite_engine() -> str | None:
    """The installed Milvus Lite's version (``"2.5.1"``, ``"3.2.2"``), ``None`` without one.

    Milvus Lite 2.x is the compiled Milvus engine (one SQLite-backed file); 3.x is
    a pure-Python engine (a folder). Neither reads the other's database.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milvus-lite")
    except PackageNotFoundError:
        return None


def lite_serve_command(uri: str, milvus_port: int = 19530) -> str:
    """The command (in backquotes) that serves the Lite database ``uri`` on ``milvus_port``.

    Milvus Lite 3.x has ``milvus-lite server``; 2.x serves a file through its ``Server``.
    """
    import shlex

    path = str(Path(uri).expanduser())
    if (lite_engine() or "3").startswith("2."):
        code = (
            "from milvus_lite.server import Server; "
            f'Server({json.dumps(path)}, "127.0.0.1:{milvus_port}").start(); input()'
        )
        return f"`python -c {shlex.quote(code)}`"
    return f"`milvus-lite server --data-dir {shlex.quote(path)} --port {milvus_port}`"


def lite_file_engine(path: Path) -> str | None:
    """The Milvus Lite generation that wrote ``path``: ``"2"``, ``"3"``, or ``None``.

    ``None`` when there is nothing there yet (or an empty file), or the layout is
    neither: Milvus Lite 2.x keeps a SQLite file, 3.x a folder.
    """
    try:
        if path.is_dir():
            return "3" if any(path.iterdir()) else None
        if not path.is_file() or path.stat().st_size == 0:
            return None
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    return "2" if head.startswith(b"SQLite format 3") else None


def _check_lite_engine(milvus: MilvusSettings, path: Path) -> None:
    """Refuse, in one line, a Lite database that another Milvus Lite generation wrote."""
    installed = lite_engine()
    written = lite_file_engine(path)
    if installed is None or written is None or installed.split(".")[0] == written:
        return
    raise StoreUnavailableError(
        f"Milvus Lite database {milvus.uri} was written by Milvus Lite {written}.x, which this "
        f"install's Milvus Lite {installed} cannot read (README: Which Milvus Lite): ingest "
        "again into a new milvus.uri, or copy it with `milvus-rag migrate --to SERVER_URI` "
        f"from an install with Milvus Lite {written}.x, then migrate from that server here"
    )


def _connect_error(milvus: MilvusSettings, exc: BaseException) -> StoreError:
    if milvus.is_lite:
        path = Path(milvus.uri).expanduser()
        # A file served here is never probed: the probe would release its engine's lock.
        if not _served_here(path) and _lite_file_locked(path):
            return StoreLockedError(
                f"Milvus Lite database {milvus.uri} is open in another process; stop that "
                f"process, or serve the file with {lite_serve_command(milvus.uri)} and set "
                "milvus.uri to its http:// address"
            )
        return StoreUnavailableError(
            f"Milvus Lite database {milvus.uri} cannot be opened ({reason(exc)})"
        )
    return StoreUnavailableError(
        f"Milvus at {milvus.uri} cannot be reached ({reason(exc)}); check that the server "
        "is running and milvus.uri / MILVUS_RAG_MILVUS__TOKEN are right"
    )


def _served_here(path: Path) -> bool:
    """True when this process already serves the Milvus Lite 2.x file ``path``.

    Its lock is then a POSIX lock of this process, which closing any descriptor of the
    lock file would release (and so stop the engine): it must not be probed.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            from milvus_lite.server_manager import server_manager_instance
    except Exception:
        return False
    served = getattr(server_manager_instance, "_servers", {})
    return str(path.absolute().resolve()) in served


def _lite_file_locked(path: Path) -> bool:
    """True when another process holds Milvus Lite's lock on ``path``."""
    import fcntl

    # milvus-lite 3.x: the database is a folder holding an flock-ed LOCK file;
    # 2.x: a file beside it, .NAME.lock, held with a POSIX lock (lockf), which flock
    # does not see.
    candidates = [path / "LOCK", path.parent / f".{path.name}.lock", path]
    for candidate in candidates:
        if not candidate.exists() or candidate.is_dir():
            continue
        try:
            with candidate.open("rb+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(handle, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):  # lockf's "held by another"
                return True
            continue
    return False


def _quiet_lite_logger() -> None:
    """milvus-lite logs a full traceback before pymilvus raises; the error says it all.

    pymilvus warns at each query iterator on Milvus Lite (and old servers) that it uses a
    client-side timestamp, which is what this package wants: that notice is dropped unless
    the ``pymilvus`` logger is set to INFO or below (asked for).
    """
    logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)
    for name in _ITERATOR_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ClientTimestampNotice) for f in logger.filters):
            logger.addFilter(_ClientTimestampNotice())


_ITERATOR_LOGGERS = (
    "pymilvus.client.iterator.query_iterator",  # pymilvus 3
    "pymilvus.client.iterator.search_iterator",
    "pymilvus.orm.iterator",  # pymilvus 2.6
    "pymilvus.client.search_iterator",
)


class _ClientTimestampNotice(logging.Filter):
    """Drops pymilvus's "failed to get mvccTs ... use client-side ts" notice (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "mvccTs" not in str(record.msg):
            return True
        return logging.getLogger("pymilvus").isEnabledFor(logging.INFO)


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors.

    A gRPC error (its text is a multi-line ``<_InactiveRpcError ...>`` dump) gives its
    status code's name and its details instead: ``PERMISSION_DENIED: ...``.
    """
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        try:
            status, text = code(), details()
        except Exception:  # not a finished RPC's error after all
            status, text = None, None
        if status is not None or text:
            name = getattr(status, "name", None) or str(status or "gRPC error")
            return f"{name}: {str(text or '').strip()}".strip(": ").splitlines()[0][:200]
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).strip().splitlines()[0][:200]
