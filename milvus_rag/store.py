"""The langchain-milvus vector store, built from settings.

Owns three things the rest of the package relies on:

* the collection schema (``id`` primary key, ``text``, ``vector``, metadata in
  the dynamic field; in hybrid mode a ``sparse`` field filled by Milvus's own
  BM25 function),
* the embedding identity recorded on the collection (model, dimension, metric)
  and checked on every open, so vectors of two models are never mixed,
* clear errors for Milvus Lite's one-process rule and unreachable servers.

Example:
    .. code-block:: python

        from milvus_rag import MilvusModelEmbeddings, load_settings
        from milvus_rag.store import open_vector_store

        settings = load_settings()
        embeddings = MilvusModelEmbeddings(model_dir="../shared/models/all-MiniLM-L6-v2-onnx")
        store = open_vector_store(settings, embeddings)
        hits = store.similarity_search_with_score("How is data stored in milvus?", k=3)
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_rag.bm25 import analyzer_params
from milvus_rag.errors import (
    EmbeddingMismatchError,
    EmptyCollectionError,
    IngestLockedError,
    MilvusRAGError,
    SchemaMismatchError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
)
from milvus_rag.schema import (
    BOOKKEEPING_FIELDS,
    CHUNK_COUNT_FIELD,
    CHUNK_SET_FIELD,
    CHUNKER_FIELD,
    FORMAT_FIELD,
    HEADING_FIELD,
    ID_FIELD,
    ORIGIN_FIELD,
    POSITION_FIELD,
    SCOPE_MAX_LENGTH,
    SOURCE_FIELD,
    SOURCE_HASH_FIELD,
    SPARSE_FIELD,
    TEXT_FIELD,
    VECTOR_FIELD,
    VIEW_FIELD,
)
from milvus_rag.scopes import DEFAULT_SCOPE, SCOPE_FIELD

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_milvus import Milvus
    from pymilvus import MilvusClient

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.settings import MilvusSettings, Settings

__all__ = [
    "BOOKKEEPING_FIELDS",
    "CHUNKER_FIELD",
    "CHUNK_COUNT_FIELD",
    "CHUNK_SET_FIELD",
    "FORMAT_FIELD",
    "HEADING_FIELD",
    "IDENTITY_PROPERTY",
    "ID_FIELD",
    "INGESTS_PROPERTY",
    "LOAD_ATTEMPTS",
    "LOCK_LEASE_SECONDS",
    "LOCK_OWNERLESS_SECONDS",
    "META_COLLECTION",
    "ORIGIN_FIELD",
    "POSITION_FIELD",
    "SCOPE_FIELD",
    "SOURCE_FIELD",
    "SOURCE_HASH_FIELD",
    "SPARSE_FIELD",
    "TEXT_FIELD",
    "TEXT_VIEW",
    "VECTOR_FIELD",
    "VIEW_FIELD",
    "IngestLock",
    "LockStatus",
    "StoredSource",
    "check_identity",
    "chunk_count",
    "collection_identity",
    "connect",
    "connect_existing",
    "count_chunks",
    "count_entities",
    "create_collection",
    "delete_ids",
    "delete_sources",
    "drop_collection",
    "ensure_collection",
    "fetch_vectors",
    "flush_collection",
    "grant_user",
    "has_collection",
    "has_sparse_field",
    "ingest_lock_status",
    "ingest_records",
    "insert_rows",
    "iter_rows",
    "list_collections",
    "list_sources",
    "lite_engine",
    "lite_file_engine",
    "lite_serve_command",
    "load_collection",
    "metadata_keys",
    "open_vector_store",
    "reason",
    "record_identity",
    "record_ingest",
    "release_ingest_lock",
    "row_fields",
    "search_rows",
    "stored_analyzer",
    "supports_bm25",
    "supports_filter_templates",
    "upsert_rows",
    "views_note",
]

# The schema's field names (metadata fields live in the dynamic field).
IDENTITY_PROPERTY = "milvus_rag.embedding"
#: The ``view`` of a row holding a chunk's own text. A chunk may have other views (the
#: markdown splitter embeds a question heading apart): extra rows, counted as views.
TEXT_VIEW = "text"
_QUESTION_VIEW = "question"
ID_MAX_LENGTH = 64
TEXT_MAX_BYTES = 65535

_log = logging.getLogger(__name__)


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


def _describe_uri(milvus: MilvusSettings) -> str:
    return f"Milvus Lite database {milvus.uri}" if milvus.is_lite else f"Milvus at {milvus.uri}"


def connect(milvus: MilvusSettings) -> MilvusClient:
    """Open a ``MilvusClient``, mapping the usual failures to typed errors.

    Raises:
        StoreLockedError: the Milvus Lite file is open in another process.
        StoreUnavailableError: the server cannot be reached, or the Lite path is unusable.
    """
    from pymilvus import MilvusClient

    args = connection_args(milvus)
    if milvus.is_lite:
        parent = Path(args["uri"]).parent
        if not parent.is_dir():
            raise StoreUnavailableError(f"milvus.uri {milvus.uri}: folder {parent} does not exist")
        _check_lite_engine(milvus, Path(args["uri"]))
        path = Path(args["uri"])
        # Checked first on 2.x: its failed open deletes the holder's lock file.
        two = (lite_engine() or "").startswith("2.")
        if two and not _served_here(path) and _lite_file_locked(path):
            raise _connect_error(milvus, RuntimeError("locked"))
    _quiet_lite_logger()
    try:
        with warnings.catch_warnings():
            # Milvus Lite 2.5.1 imports pkg_resources, which warns on every import.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return MilvusClient(**args)
    except Exception as exc:
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
        if _lite_file_locked(Path(milvus.uri).expanduser()):
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


def collection_identity(client: MilvusClient, collection: str) -> dict[str, Any] | None:
    """The embedding record of ``collection``, or ``None`` if it has none.

    Read from the metadata collection (:data:`META_COLLECTION`); a collection made by
    an older milvus-rag keeps it in its properties, read as a fallback.
    """
    record = _meta_rows(client, collection).get(_key(collection, "embedding"))
    if record is None:
        record = _property_record(client, collection, IDENTITY_PROPERTY)
    return record if record else None


def _property_record(client: MilvusClient, collection: str, key: str) -> dict[str, Any] | None:
    """A JSON record kept in a collection property (where milvus-rag before 0.x kept it)."""
    properties = client.describe_collection(collection).get("properties") or {}
    raw = properties.get(key)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------- metadata

#: The collection beside the data (one per database) that holds milvus-rag's records
#: about each collection: its embedding record, its ingest runs, its ingest lock's lease.
#: Every engine has collections, upsert and query (Milvus Lite 2.5 has no collection
#: properties), so this works on all of them.
META_COLLECTION = "milvus_rag_meta"
_META_KEY = "key"
_META_COLLECTION_FIELD = "collection"
_META_KIND = "kind"
_META_PAYLOAD = "payload"
_META_VECTOR = "v"  # Milvus requires a vector field
_META_FIELDS = [_META_KEY, _META_COLLECTION_FIELD, _META_KIND, _META_PAYLOAD]
_META_MAX_PAYLOAD = 65535


def _key(collection: str, kind: str, name: str = "") -> str:
    return f"{collection}:{kind}:{name}" if name else f"{collection}:{kind}"


def _ensure_meta(client: MilvusClient) -> None:
    """Create (or finish creating) and load the metadata collection.

    Each step is checked on its own, so a process killed half-way through a
    creation leaves something the next call completes.
    """
    from pymilvus import DataType

    if not client.has_collection(META_COLLECTION):
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_META_KEY, DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field(_META_COLLECTION_FIELD, DataType.VARCHAR, max_length=256)
        schema.add_field(_META_KIND, DataType.VARCHAR, max_length=32)
        schema.add_field(_META_PAYLOAD, DataType.VARCHAR, max_length=_META_MAX_PAYLOAD)
        schema.add_field(_META_VECTOR, DataType.FLOAT_VECTOR, dim=2)
        try:
            client.create_collection(META_COLLECTION, schema=schema, consistency_level="Strong")
        except Exception:
            if not client.has_collection(META_COLLECTION):  # not a lost race: a real failure
                raise
    if not client.list_indexes(META_COLLECTION):
        params = client.prepare_index_params()
        params.add_index(field_name=_META_VECTOR, index_type="FLAT", metric_type="L2")
        try:  # no wait for the build (pymilvus polls every 0.5 s): loading waits for it
            client.create_index(META_COLLECTION, params, sync=False)
        except Exception:
            if not client.list_indexes(META_COLLECTION):
                raise
    load_collection(client, META_COLLECTION)


def _meta_rows(
    client: MilvusClient, collection: str, kind: str | None = None
) -> dict[str, dict[str, Any]]:
    """The records of ``collection`` (of one ``kind``): key -> payload."""
    from milvus_rag.filters import all_of, eq

    if not client.has_collection(META_COLLECTION):
        return {}
    _ensure_meta(client)
    expr = all_of(eq(_META_COLLECTION_FIELD, collection), kind and eq(_META_KIND, kind))
    rows = client.query(
        META_COLLECTION,
        filter=str(expr),
        output_fields=_META_FIELDS,
        consistency_level="Strong",
    )
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        try:
            payload = json.loads(row[_META_PAYLOAD])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(payload, dict):
            out[str(row[_META_KEY])] = payload
    return out


def _meta_write(client: MilvusClient, collection: str, records: dict[str, tuple[str, Any]]) -> None:
    """Upsert records: key -> (kind, JSON-ready payload)."""
    if not records:
        return
    _ensure_meta(client)
    rows = []
    for key, (kind, payload) in records.items():
        text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
        if len(text.encode()) > _META_MAX_PAYLOAD:
            raise StoreError(f"a milvus-rag record of collection {collection} is too large")
        rows.append(
            {
                _META_KEY: key,
                _META_COLLECTION_FIELD: collection,
                _META_KIND: kind,
                _META_PAYLOAD: text,
                _META_VECTOR: [0.0, 0.0],
            }
        )
    client.upsert(META_COLLECTION, rows)


def _meta_delete(client: MilvusClient, keys: list[str]) -> None:
    if keys and client.has_collection(META_COLLECTION):
        _ensure_meta(client)
        client.delete(META_COLLECTION, ids=keys)


def _meta_forget(client: MilvusClient, collection: str) -> None:
    """Delete the records of ``collection`` (it is dropped, or about to be created);
    its ingest lock's lease stays with the lock."""
    keys = [key for key in _meta_rows(client, collection) if key != _key(collection, "lock")]
    _meta_delete(client, sorted(keys))


def _server_version(client: MilvusClient) -> tuple[int, int] | None:
    """(major, minor) of a Milvus server; ``None`` for Milvus Lite or when unknown."""
    import re

    rpc_log = logging.getLogger("pymilvus.decorators")
    level = rpc_log.level
    rpc_log.setLevel(logging.CRITICAL)  # Milvus Lite 2.5 answers UNIMPLEMENTED, logged at ERROR
    try:
        version = str(client.get_server_version())
    except Exception:
        return None
    finally:
        rpc_log.setLevel(level)
    if version.startswith("milvus_lite"):
        return None
    match = re.search(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def supports_bm25(client: MilvusClient) -> bool:
    """True when the server has Milvus's BM25 function (Milvus >= 2.5, Milvus Lite)."""
    version = _server_version(client)
    return version is None or version >= (2, 5)


def scope_field_options(client: MilvusClient) -> dict[str, Any] | None:
    """How a new collection declares the scope field (:mod:`milvus_rag.scopes`), or None
    to keep it a dynamic field.

    Milvus Lite 3.x: the partition key, with a default value so that rows written without
    a scope (LangChain's ``add_texts``) are in the default scope. Elsewhere a dynamic
    field, filtered the same way: Milvus Lite 2.5.1's engine dies on a row that leaves a
    defaulted field out and cannot filter a dynamic field of a partition-keyed collection
    in a query iterator, and servers older than 2.4 have no default values.
    """
    if _server_version(client) is not None or not (lite_engine() or "").startswith("3."):
        return None
    return {
        "max_length": SCOPE_MAX_LENGTH,
        "is_partition_key": True,
        "default_value": DEFAULT_SCOPE,
    }


def supports_filter_templates(client: MilvusClient) -> bool:
    """True on servers with filter templating (Milvus >= 2.5); Milvus Lite has none."""
    version = _server_version(client)
    return version is not None and version >= (2, 5)


def has_sparse_field(client: MilvusClient, collection: str) -> bool:
    """True when the collection carries the BM25 ``sparse`` field (hybrid mode)."""
    fields = client.describe_collection(collection).get("fields", [])
    return any(field.get("name") == SPARSE_FIELD for field in fields)


def stored_analyzer(client: MilvusClient, collection: str) -> dict[str, Any] | None:
    """The ``analyzer_params`` of the collection's text field (``None`` when unset)."""
    for field in client.describe_collection(collection).get("fields", []):
        if field.get("name") == TEXT_FIELD:
            value = field.get("params", {}).get("analyzer_params")
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    return None
            return value if isinstance(value, dict) else None
    return None


def _warn_if_analyzer_differs(client: MilvusClient, settings: Settings) -> None:
    """Log once when a hybrid collection was built with other BM25 stop words.

    The analyzer is part of the collection schema: a changed
    ``retrieval.bm25_stop_words`` applies only after ``--recreate``.
    """
    name = settings.milvus.collection
    stored = stored_analyzer(client, name)
    wanted = analyzer_params(settings.retrieval.bm25_stop_words)
    if stored is not None and stored != wanted:
        _log.warning(
            "collection %s was built with other BM25 stop words than retrieval.bm25_stop_words; "
            "the new setting applies after ingest --recreate --mode hybrid",
            name,
        )


def count_entities(client: MilvusClient, collection: str) -> int:
    """Number of chunks stored (0 when the collection does not exist)."""
    if not client.has_collection(collection):
        return 0
    rows = client.query(collection, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def count_chunks(client: MilvusClient, collection: str) -> tuple[int, int]:
    """``(chunks, views)`` stored: a chunk's other views (its question heading, embedded
    apart) are rows of their own, counted as views, not chunks (0, 0 without a collection).
    """
    from milvus_rag.filters import eq

    rows = count_entities(client, collection)
    if rows == 0:
        return 0, 0
    found = client.query(
        collection, filter=str(eq("view", _QUESTION_VIEW)), output_fields=["count(*)"]
    )
    views = int(found[0]["count(*)"]) if found else 0
    return rows - views, views


def views_note(views: int) -> str:
    """`` (+53 question views)`` after a number of chunks (nothing without views)."""
    if not views:
        return ""
    return f" (+{views} question view{'' if views == 1 else 's'})"


def chunk_count(chunks: int, views: int = 0) -> str:
    """Chunks as every command and route says them: ``61 chunks (+53 question views)``."""
    return f"{chunks} chunk{'' if chunks == 1 else 's'}{views_note(views)}"


def row_fields(client: MilvusClient, collection: str) -> list[str]:
    """The output fields that give a row without its vectors: scalars and the dynamic ones.

    (``"*"`` would ship every vector back with each hit, a few milliseconds a search.)
    """
    from pymilvus import DataType

    vectors = {
        DataType.FLOAT_VECTOR,
        DataType.FLOAT16_VECTOR,
        DataType.BFLOAT16_VECTOR,
        DataType.BINARY_VECTOR,
        DataType.SPARSE_FLOAT_VECTOR,
    }
    described = client.describe_collection(collection)
    fields = [f["name"] for f in described.get("fields", []) if f.get("type") not in vectors]
    if described.get("enable_dynamic_field"):
        fields.append("$meta")
    return fields


def metadata_keys(client: MilvusClient, collection: str, sample: int = 1000) -> set[str]:
    """The metadata keys the chunks hold (of the first ``sample`` rows): what a
    ``--filter KEY=VALUE`` can match. The text, vector and id fields are left out.
    """
    rows = client.query(
        collection, filter="", output_fields=row_fields(client, collection), limit=sample
    )
    keys = {key for row in rows for key in row}
    return keys - {ID_FIELD, TEXT_FIELD, VECTOR_FIELD, SPARSE_FIELD, "$meta"}


def search_rows(
    client: MilvusClient,
    collection: str,
    field: str,
    query: Any,
    limit: int,
    expr: str | None = None,
    output_fields: list[str] | None = None,
    filter_params: dict[str, Any] | None = None,
) -> list[tuple[Document, float]]:
    """Search one vector field (``query``: a vector, or text for the BM25 field).

    Returns ``(Document, distance)`` pairs best first; each document holds the
    row's text and its other fields as metadata (``id`` included).
    ``output_fields`` defaults to :func:`row_fields` (pass them to save a call);
    ``filter_params`` fills a templated ``expr`` (see :func:`supports_filter_templates`).
    """
    from langchain_core.documents import Document

    metric = "BM25" if field == SPARSE_FIELD else None
    params: dict[str, Any] = {"metric_type": metric} if metric else {}
    extra: dict[str, Any] = {"filter_params": filter_params} if filter_params else {}
    hits = client.search(
        collection,
        [query],
        anns_field=field,
        limit=limit,
        filter=expr or "",
        output_fields=output_fields or row_fields(client, collection),
        search_params=params,
        **extra,
    )[0]
    out = []
    for hit in hits:
        entity = dict(hit.get("entity") or {})
        entity.pop(VECTOR_FIELD, None)
        entity.pop(SPARSE_FIELD, None)
        text = entity.pop(TEXT_FIELD, "")
        entity.setdefault(ID_FIELD, hit.get("id"))
        out.append((Document(page_content=text, metadata=entity), float(hit["distance"])))
    return out


#: Attempts at loading a collection, and the first pause between two (doubled each time).
LOAD_ATTEMPTS = 4
LOAD_BACKOFF_SECONDS = 0.25


def load_collection(client: MilvusClient, collection: str) -> None:
    """Load ``collection`` unless it is loaded (a killed writer leaves Milvus Lite's released).

    Never releases a loaded collection. A failed load is tried again
    (:data:`LOAD_ATTEMPTS` in all, short pauses between): Milvus Lite 3.x can fail
    to read segment files a flush has just written (``file seems not fully written``).

    Raises:
        StoreError: the collection could not be loaded (one line, the last reason).
    """

    from pymilvus.client.types import LoadState

    state = client.get_load_state(collection).get("state")
    if state == LoadState.Loaded:
        return
    for attempt in range(LOAD_ATTEMPTS):
        try:
            client.load_collection(collection)
            return
        except Exception as exc:
            if attempt + 1 == LOAD_ATTEMPTS:
                raise StoreError(
                    f"collection {collection} could not be loaded ({LOAD_ATTEMPTS} attempts): "
                    f"{reason(exc)}"
                ) from exc
            _log.debug("loading %s failed (%s); trying again", collection, reason(exc))
            time.sleep(LOAD_BACKOFF_SECONDS * 2**attempt)


def drop_collection(client: MilvusClient, collection: str) -> None:
    """Drop ``collection`` if it exists, and forget milvus-rag's records of it."""
    if client.has_collection(collection):
        client.drop_collection(collection)
    _meta_forget(client, collection)


def _dense_index(settings: Settings) -> dict[str, Any]:
    return {
        "index_type": settings.milvus.index_type,
        "metric_type": settings.milvus.metric,
        "params": {},
    }


# Milvus Lite accepts only drop_ratio_build=0.
_SPARSE_INDEX: dict[str, Any] = {
    "index_type": "SPARSE_INVERTED_INDEX",
    "metric_type": "BM25",
    "params": {"drop_ratio_build": 0},
}


def _index_params(client: MilvusClient, settings: Settings, hybrid: bool) -> Any:
    params = client.prepare_index_params()
    params.add_index(field_name=VECTOR_FIELD, **_dense_index(settings))
    if hybrid:
        params.add_index(field_name=SPARSE_FIELD, **_SPARSE_INDEX)
    return params


def create_collection(
    client: MilvusClient,
    settings: Settings,
    identity: dict[str, Any],
    *,
    hybrid: bool,
) -> None:
    """Create the collection with milvus-rag's schema and record ``identity``."""
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
    text_options: dict[str, Any] = {"max_length": TEXT_MAX_BYTES}
    if hybrid:
        text_options["enable_analyzer"] = True
        text_options["analyzer_params"] = analyzer_params(settings.retrieval.bm25_stop_words)
    schema.add_field(TEXT_FIELD, DataType.VARCHAR, **text_options)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=int(identity["dim"]))
    scope = scope_field_options(client)
    if scope is not None:
        schema.add_field(SCOPE_FIELD, DataType.VARCHAR, **scope)
    if hybrid:
        schema.add_field(SPARSE_FIELD, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=[TEXT_FIELD],
                output_field_names=[SPARSE_FIELD],
            )
        )
    name = settings.milvus.collection
    # The record goes first: a kill at any instant leaves no collection (the next run
    # creates it, replacing the record), or a collection with its record.
    _meta_forget(client, name)
    record_identity(client, name, dict(identity, metric=settings.milvus.metric))
    client.create_collection(
        name,
        schema=schema,
        index_params=_index_params(client, settings, hybrid),
        consistency_level=settings.milvus.consistency,
    )


def record_identity(client: MilvusClient, collection: str, record: dict[str, Any]) -> None:
    """Store ``record`` as the embedding record of ``collection`` (see :func:`check_identity`)."""
    _meta_write(client, collection, {_key(collection, "embedding"): ("embedding", record)})


def _finish_indexes(
    client: MilvusClient, settings: Settings, collection: str, identity: dict[str, Any]
) -> None:
    """Create the indexes a creation killed half-way did not (a collection without its
    index cannot be loaded); never touches a collection without milvus-rag's schema."""
    if not _milvus_rag_schema(client, collection, int(identity.get("dim", -1))):
        return
    fields = {f.get("name") for f in client.describe_collection(collection).get("fields", [])}
    wanted = {VECTOR_FIELD: _dense_index(settings), SPARSE_FIELD: _SPARSE_INDEX}
    missing = [
        f for f in wanted if f in fields and not client.list_indexes(collection, field_name=f)
    ]
    if missing:
        params = client.prepare_index_params()
        for field in missing:
            params.add_index(field_name=field, **wanted[field])
        client.create_index(collection, params)


def _milvus_rag_schema(client: MilvusClient, collection: str, dim: int) -> bool:
    """True when ``collection`` has milvus-rag's fields, its vectors ``dim`` wide."""
    from pymilvus import DataType

    described = client.describe_collection(collection)
    fields = {f.get("name"): f for f in described.get("fields", [])}
    key, text, vector = (fields.get(n) for n in (ID_FIELD, TEXT_FIELD, VECTOR_FIELD))
    return (
        key is not None
        and bool(key.get("is_primary"))
        and key.get("type") == DataType.VARCHAR
        and text is not None
        and text.get("type") == DataType.VARCHAR
        and vector is not None
        and vector.get("type") == DataType.FLOAT_VECTOR
        and int((vector.get("params") or {}).get("dim", -1)) == dim
        and bool(described.get("enable_dynamic_field"))
    )


def _unfinished_creation(client: MilvusClient, collection: str, identity: dict[str, Any]) -> bool:
    """True for an empty collection with milvus-rag's schema and no embedding record: a
    creation by a milvus-rag killed before it recorded the model (releases before the
    record moved to :data:`META_COLLECTION` wrote it second). Nothing in it can belong
    to another model, so it is finished, not refused. A collection that holds chunks
    and no record is refused: its vectors' model cannot be told."""
    if not _milvus_rag_schema(client, collection, int(identity.get("dim", -1))):
        return False
    load_collection(client, collection)
    return count_entities(client, collection) == 0


def check_identity(client: MilvusClient, settings: Settings, identity: dict[str, Any]) -> None:
    """Refuse a collection built by another embedding model, dimension or metric.

    An empty collection with milvus-rag's schema and no record (an unfinished
    creation) passes; :func:`ensure_collection` records it when it writes.
    """
    name = settings.milvus.collection
    stored = collection_identity(client, name)
    if stored is None:
        if _unfinished_creation(client, name, identity):
            return
        if _milvus_rag_schema(client, name, int(identity.get("dim", -1))):
            raise EmbeddingMismatchError(
                f"collection {name} holds chunks but no embedding record, so the model that "
                "built them is unknown; recreate it (ingest --recreate, or migrate --recreate)"
            )
        raise EmbeddingMismatchError(
            f"collection {name} was not created by milvus-rag (no embedding record); "
            "re-ingest with --recreate"
        )
    wanted = dict(identity, metric=settings.milvus.metric)
    for key in sorted(set(stored) | set(wanted)):
        if stored.get(key) != wanted.get(key):
            raise EmbeddingMismatchError(
                f"collection {name} was built with {key}={stored.get(key)!r} but the current "
                f"settings give {key}={wanted.get(key)!r}; re-ingest with --recreate "
                "(or restore the embedding settings it was built with)"
            )


def ensure_collection(
    client: MilvusClient,
    settings: Settings,
    embeddings: MilvusModelEmbeddings | Callable[[], dict[str, Any]],
    *,
    create: bool = False,
    recreate: bool = False,
    mode: str | None = None,
) -> bool:
    """Check (or create) the configured collection for ``embeddings``; True when hybrid.

    The one place a collection is checked or created: ingest, migrate and the
    retriever all come here.

    Args:
        client: an open client (see :func:`connect`).
        settings: the loaded settings (``milvus.collection`` names the collection).
        embeddings: the embedding model the collection is (to be) built with, or a
            function returning its identity record (migrate copies the source's).
        create: create the collection when missing (ingest); otherwise a missing
            collection raises :class:`EmptyCollectionError`.
        recreate: drop the collection first (implies ``create``); the model is
            loaded before anything is dropped.
        mode: ``dense`` or ``hybrid``; defaults to ``settings.retrieval.mode``.
            Hybrid falls back to dense, with one warning, on servers without BM25,
            and, when ``mode`` is not given, on a dense collection (one warning says
            hybrid needs a re-ingest); a ``mode="hybrid"`` given raises instead.

    Raises:
        EmbeddingMismatchError, SchemaMismatchError, EmptyCollectionError, StoreError.
    """
    # retrieval.mode (hybrid by default) adapts to a dense collection; a mode passed does not.
    explicit = mode is not None
    mode = mode or settings.retrieval.mode
    name = settings.milvus.collection
    identify = embeddings if callable(embeddings) else embeddings.identity
    try:
        exists = client.has_collection(name)
        if not exists and not (create or recreate):
            raise EmptyCollectionError(
                f"collection {name} does not exist in {_describe_uri(settings.milvus)}: "
                "run `milvus-rag ingest SOURCE` first"
            )
        identity = identify()  # loads the model: fail here before dropping anything
        if recreate and exists:
            drop_collection(client, name)
            exists = False
        hybrid = mode == "hybrid"
        if hybrid and not supports_bm25(client):
            _log.warning(
                "%s has no BM25 function (Milvus before 2.5): hybrid search falls back to dense",
                _describe_uri(settings.milvus),
            )
            hybrid = False
        if exists:
            _finish_indexes(client, settings, name, identity)
            check_identity(client, settings, identity)
            load_collection(client, name)
            if create:
                _complete_record(client, settings, identity)
            if hybrid and not has_sparse_field(client, name):
                if explicit:
                    raise SchemaMismatchError(
                        f"collection {name} was built for dense search and has no BM25 field; "
                        "recreate it for hybrid search (ingest --recreate --mode hybrid, or "
                        "migrate --recreate)"
                    )
                _log.warning(
                    "collection %s was built for dense search: it is %s dense; hybrid, the "
                    "default mode, needs a re-ingest (ingest --recreate)",
                    name,
                    "written" if create else "searched",
                )
                hybrid = False
            if hybrid and create:
                _warn_if_analyzer_differs(client, settings)
        else:
            create_collection(client, settings, identity, hybrid=hybrid)
        return hybrid
    except MilvusRAGError:
        raise
    except Exception as exc:
        raise StoreError(f"{_describe_uri(settings.milvus)}: {reason(exc)}") from exc


def _complete_record(client: MilvusClient, settings: Settings, identity: dict[str, Any]) -> None:
    """Before a write: record an unfinished creation's identity, and move a record kept in
    the collection's properties (older milvus-rag) to :data:`META_COLLECTION`."""
    name = settings.milvus.collection
    if _key(name, "embedding") in _meta_rows(client, name, "embedding"):
        return
    record = _property_record(client, name, IDENTITY_PROPERTY)
    if record is None:
        _log.info("collection %s: completing its creation (no embedding record yet)", name)
        record = dict(identity, metric=settings.milvus.metric)
    record_identity(client, name, record)


def open_vector_store(
    settings: Settings,
    embeddings: MilvusModelEmbeddings,
    *,
    create: bool = False,
    recreate: bool = False,
    mode: str | None = None,
    client: MilvusClient | None = None,
) -> Milvus:
    """Open the configured collection as a langchain-milvus ``Milvus`` store.

    Checks it first with :func:`ensure_collection` (same arguments).

    Raises:
        EmbeddingMismatchError, SchemaMismatchError, EmptyCollectionError,
        StoreLockedError, StoreUnavailableError.
    """
    own = client is None
    milvus = settings.milvus
    lite_missing = milvus.is_lite and not Path(milvus.uri).expanduser().exists()
    if own and not (create or recreate) and lite_missing:  # connecting would create it
        raise EmptyCollectionError(
            f"there is no Milvus Lite database at {milvus.uri}, so no collection "
            f"{milvus.collection}: run `milvus-rag ingest SOURCE` first, or fix milvus.uri"
        )
    client = client if client is not None else connect(milvus)
    try:
        hybrid = ensure_collection(
            client, settings, embeddings, create=create, recreate=recreate, mode=mode
        )
    finally:
        if own:
            client.close()
    try:
        return _langchain_store(settings, embeddings, hybrid=hybrid)
    except MilvusRAGError:
        raise
    except Exception as exc:
        raise StoreError(f"{_describe_uri(settings.milvus)}: {reason(exc)}") from exc


class _NoAsyncClientNotice(logging.Filter):
    """langchain-milvus 0.3 warns, outside an event loop, that its async client is not
    made: milvus-rag searches through the sync client only (in threads when async)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to initialize AsyncMilvusClient")


def _langchain_store(settings: Settings, embeddings: Any, *, hybrid: bool) -> Milvus:
    from langchain_milvus import BM25BuiltInFunction, Milvus

    _before_first_search()
    lc_log = logging.getLogger("langchain_milvus.vectorstores.milvus")
    if not any(isinstance(f, _NoAsyncClientNotice) for f in lc_log.filters):
        lc_log.addFilter(_NoAsyncClientNotice())
    dense_index = _dense_index(settings)
    dense_search: dict[str, Any] = {"metric_type": settings.milvus.metric, "params": {}}
    common: dict[str, Any] = {
        "collection_name": settings.milvus.collection,
        "connection_args": connection_args(settings.milvus),
        "consistency_level": settings.milvus.consistency,
        "primary_field": ID_FIELD,
        "text_field": TEXT_FIELD,
        "enable_dynamic_field": True,
        "auto_id": False,
    }
    if not hybrid:
        return Milvus(
            embedding_function=embeddings,
            vector_field=VECTOR_FIELD,
            index_params=dense_index,
            search_params=dense_search,
            **common,
        )
    return Milvus(
        embedding_function=embeddings,
        builtin_function=BM25BuiltInFunction(
            input_field_names=TEXT_FIELD,
            output_field_names=SPARSE_FIELD,
            analyzer_params=analyzer_params(settings.retrieval.bm25_stop_words),
        ),
        vector_field=[VECTOR_FIELD, SPARSE_FIELD],
        index_params=[dense_index, _SPARSE_INDEX],
        search_params=[
            dense_search,
            {"metric_type": "BM25", "params": {"drop_ratio_search": 0}},
        ],
        **common,
    )


_FIRST_SEARCH = threading.Lock()


def _before_first_search() -> None:
    """Run pymilvus's lazy ``scipy.sparse`` check now, once, under a lock.

    pymilvus loads ``scipy.sparse`` on its first search with ``exec_module``, outside
    Python's import lock: when two threads search first at once (a server's first
    concurrent requests), both execute the module and one fails with a circular-import
    ``AttributeError`` (a 500). A store is opened before it searches, so this runs first.
    """
    with _FIRST_SEARCH:
        try:
            from pymilvus.client.utils import SciPyHelper
        except ImportError:  # another pymilvus layout: nothing lazy to settle
            return
        SciPyHelper.is_scipy_sparse([])


# --------------------------------------------------------------------------- documents

INGESTS_PROPERTY = "milvus_rag.ingests"
#: Ingest runs (origin and glob) remembered in :data:`INGESTS_PROPERTY` (the latest are kept).
MAX_RECORDED_RUNS = 500
_PAGE = 4096


def connect_existing(milvus: MilvusSettings) -> MilvusClient:
    """Connect to a collection that must exist already, and load it.

    Unlike :func:`connect`, never creates a Milvus Lite file.

    Raises:
        EmptyCollectionError: there is no such database or collection.
        StoreLockedError, StoreUnavailableError: as :func:`connect`.
    """
    if milvus.is_lite and not Path(milvus.uri).expanduser().exists():
        raise EmptyCollectionError(
            f"there is no Milvus Lite database at {milvus.uri}: run `milvus-rag ingest SOURCE` "
            "first, or fix milvus.uri"
        )
    client = connect(milvus)
    try:
        if not client.has_collection(milvus.collection):
            raise EmptyCollectionError(
                f"collection {milvus.collection} does not exist in {_describe_uri(milvus)}: "
                "run `milvus-rag ingest SOURCE` first"
            )
        load_collection(client, milvus.collection)
    except MilvusRAGError:
        client.close()
        raise
    except Exception as exc:
        client.close()
        raise StoreError(f"{_describe_uri(milvus)}: {reason(exc)}") from exc
    return client


class StoredSource:
    """One source file in the collection: where it came from, its scope, rows and chunks."""

    __slots__ = ("chunkers", "ids", "origin", "positions", "scope", "source")

    def __init__(self, source: str, origin: str, scope: str = DEFAULT_SCOPE) -> None:
        self.source = source
        self.origin = origin
        self.scope = scope
        self.ids: list[str] = []
        self.positions: set[int] = set()
        self.chunkers: set[str] = set()

    @property
    def chunks(self) -> int:
        """Chunks of the file: rows holding another view of a chunk are not counted."""
        return len(self.positions) if self.positions else len(self.ids)


def list_sources(
    client: MilvusClient, collection: str, expr: str | None = None
) -> list[StoredSource]:
    """The source files stored in ``collection`` (those matching ``expr``, within the
    current request's scopes), sorted by path.

    Reads every row's ``source``, ``origin``, ``scope``, ``position`` and ``chunker`` in
    pages; two origins (or scopes) holding the same path are two entries.
    """
    from milvus_rag.scopes import narrowed

    found: dict[tuple[str, str, str], StoredSource] = {}
    iterator = client.query_iterator(
        collection,
        batch_size=_PAGE,
        filter=narrowed(expr) or "",
        output_fields=[
            ID_FIELD,
            SOURCE_FIELD,
            ORIGIN_FIELD,
            SCOPE_FIELD,
            POSITION_FIELD,
            CHUNKER_FIELD,
        ],
    )
    try:
        while batch := iterator.next():
            for row in batch:
                scope = str(row.get(SCOPE_FIELD) or DEFAULT_SCOPE)
                key = (str(row.get(SOURCE_FIELD)), str(row.get(ORIGIN_FIELD)), scope)
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = StoredSource(*key)
                entry.ids.append(str(row[ID_FIELD]))
                if isinstance(row.get(POSITION_FIELD), int):
                    entry.positions.add(row[POSITION_FIELD])
                if row.get(CHUNKER_FIELD):
                    entry.chunkers.add(str(row[CHUNKER_FIELD]))
    finally:
        iterator.close()
    return sorted(found.values(), key=lambda s: (s.source, s.origin, s.scope))


def delete_sources(client: MilvusClient, collection: str, sources: list[StoredSource]) -> int:
    """Delete every row of ``sources`` (from :func:`list_sources`); returns how many.

    The chunks hold the ingest's sync state, so the next ingest of those files writes
    them anew. The ingest records of an origin left with no chunk are dropped
    (:data:`INGESTS_PROPERTY`).
    """
    from milvus_rag.filters import eq

    ids = [cid for entry in sources for cid in entry.ids]
    for start in range(0, len(ids), _PAGE):
        client.delete(collection, ids=ids[start : start + _PAGE])
    client.flush(collection)
    records = _ingest_rows(client, collection)
    recorded = {run["origin"] for run in records["runs"]}
    gone = {
        origin
        for origin in {entry.origin for entry in sources} & recorded
        if not client.query(
            collection, filter=eq(ORIGIN_FIELD, origin), output_fields=[ID_FIELD], limit=1
        )
    }
    if gone:
        _meta_write(client, collection, _legacy_writes(collection, records, gone))
        _meta_delete(
            client,
            [
                key
                for key, run in zip(records["keys"], records["runs"], strict=True)
                if key is not None and run["origin"] in gone
            ],
        )
    return len(ids)


def ingest_records(client: MilvusClient, collection: str) -> dict[str, Any]:
    """What :func:`record_ingest` kept, oldest run first::

    {"runs": [{"origin": ..., "glob": ... or None, "at": ISO time, "splitter": ...}],
     "chunkers": {chunker fingerprint: splitter name}}
    """
    return {key: value for key, value in _ingest_rows(client, collection).items() if key != "keys"}


def _ingest_rows(client: MilvusClient, collection: str) -> dict[str, Any]:
    """:func:`ingest_records` plus ``keys``: each run's record key (``None`` for records
    still in the collection's properties, where milvus-rag before the metadata
    collection kept them)."""
    rows = _meta_rows(client, collection)
    runs = [(k, v) for k, v in rows.items() if k.startswith(_key(collection, "run", ""))]
    chunkers = [v for k, v in rows.items() if k.startswith(_key(collection, "chunker", ""))]
    if runs or chunkers:
        runs.sort(key=lambda item: (int(item[1].get("n", 0)), item[0]))
        return {
            "runs": [{k: v for k, v in run.items() if k != "n"} for _, run in runs],
            "chunkers": {
                str(c.get("fingerprint")): str(c.get("splitter"))
                for c in chunkers
                if c.get("fingerprint")
            },
            "keys": [key for key, _ in runs],
        }
    record = _property_record(client, collection, INGESTS_PROPERTY) or {}
    old = record.get("runs")
    legacy = [r for r in old if isinstance(r, dict)] if isinstance(old, list) else []
    kept = record.get("chunkers")
    return {
        "runs": legacy,
        "chunkers": kept if isinstance(kept, dict) else {},
        "keys": [None] * len(legacy),
    }


def _run_key(collection: str, origin: str, glob: str | None) -> str:
    import hashlib

    digest = hashlib.sha256(json.dumps([origin, glob]).encode()).hexdigest()[:40]
    return _key(collection, "run", digest)


def _chunker_key(collection: str, chunker: str) -> str:
    import hashlib

    return _key(collection, "chunker", hashlib.sha256(chunker.encode()).hexdigest()[:40])


def _legacy_writes(
    collection: str, found: dict[str, Any], skip: set[str] | None = None
) -> dict[str, tuple[str, Any]]:
    """The records an older milvus-rag kept in the collection's properties, as records of
    :data:`META_COLLECTION` (runs of the ``skip`` origins left out); none when the
    records are there already."""

    if not any(key is None for key in found["keys"]):
        return {}
    writes: dict[str, tuple[str, Any]] = {}
    base = time.time_ns() - len(found["runs"])
    for number, run in enumerate(found["runs"]):
        if skip and run.get("origin") in skip:
            continue
        key = _run_key(collection, str(run.get("origin")), run.get("glob"))
        writes[key] = ("run", dict(run, n=base + number))
    for fingerprint, name in found["chunkers"].items():
        payload = {"fingerprint": fingerprint, "splitter": name}
        writes[_chunker_key(collection, fingerprint)] = ("chunker", payload)
    return writes


def record_ingest(
    client: MilvusClient,
    collection: str,
    *,
    origin: str,
    glob: str | None,
    splitter: str,
    chunker: str,
    at: str | None = None,
) -> None:
    """Record that ``origin`` (the files matching ``glob``) was just ingested into
    ``collection`` with ``splitter``; ``at`` defaults to now (ISO 8601, UTC).

    Kept in :data:`META_COLLECTION` (chunks are not touched), one run per origin and
    glob (the latest, :data:`MAX_RECORDED_RUNS` at most), read back by
    :func:`ingest_records`; ``milvus-rag sources`` shows it.
    """
    from datetime import datetime, timezone

    found = _ingest_rows(client, collection)
    writes = _legacy_writes(collection, found)
    when = at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    run = {"origin": origin, "glob": glob, "at": when, "splitter": splitter, "n": time.time_ns()}
    writes[_run_key(collection, origin, glob)] = ("run", run)
    payload = {"fingerprint": chunker, "splitter": splitter}
    writes[_chunker_key(collection, chunker)] = ("chunker", payload)
    _meta_write(client, collection, writes)
    keys = [k for k in found["keys"] if k is not None and k not in writes] + [
        k for k in writes if writes[k][0] == "run"
    ]
    _meta_delete(client, keys[:-MAX_RECORDED_RUNS])


#: Seconds an ingest lock stays valid without renewal; its holder renews it every
#: quarter of that while it runs.
LOCK_LEASE_SECONDS = 120.0
#: A lock that names no owner (a server that keeps no collection description) counts
#: as abandoned once it is older than this.
LOCK_OWNERLESS_SECONDS = 60.0
_LOCK_SUFFIX = "__ingest_lock"


@dataclass
class LockStatus:
    """An ingest lock found on a collection (see :func:`ingest_lock_status`)."""

    collection: str
    owner: str | None  # "host:pid" of the ingest holding it; None when unknown
    age: float | None  # seconds since it was taken; None when unknown
    renewed: float | None  # seconds since its holder last renewed it
    abandoned: str | None  # why it counts as abandoned (taken over by the next ingest)

    def describe(self) -> str:
        """One line: who holds it, since when."""
        who = self.owner or "an unknown owner"
        since = f" for {self.age:.0f} s" if self.age is not None else ""
        state = f"; abandoned: {self.abandoned}" if self.abandoned else ""
        return f"ingest lock on collection {self.collection} held by {who}{since}{state}"


class IngestLock:
    """One ingest per collection at a time.

    Milvus Lite already allows one process per database file. On a server, the
    lock is a marker collection whose description names its owner (host:pid) and
    the time it was taken: creating a collection is atomic, so a second ingest fails
    to create it and is refused, and the owner is there from the first write. The
    holder renews a lease (:data:`LOCK_LEASE_SECONDS`) in :data:`META_COLLECTION`
    while it runs. A lock whose process is gone (same host), whose lease expired,
    or that names no owner and is older than :data:`LOCK_OWNERLESS_SECONDS` is
    abandoned: the next ingest takes it over, with one warning.
    ``milvus-rag unlock`` releases one by hand.
    """

    def __init__(self, client: MilvusClient, settings: Settings) -> None:
        self.client = client
        self.enabled = not settings.milvus.is_lite
        self.collection = settings.milvus.collection
        self.name = f"{self.collection}{_LOCK_SUFFIX}"
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> IngestLock:
        if not self.enabled:
            return self
        failure: Exception | None = None
        for _ in range(3):
            try:
                self._create()
                break
            except Exception as exc:
                failure = exc
                status = ingest_lock_status(self.client, self.collection)
                if status is None:  # released meanwhile, or the creation itself failed
                    continue
                if status.abandoned is None:
                    since = f", running for {status.age:.0f} s" if status.age is not None else ""
                    raise IngestLockedError(
                        f"another ingest ({status.owner or 'unknown'}{since}) is writing "
                        f"collection {self.collection}; wait for it to finish (if it is gone, "
                        "`milvus-rag unlock` releases its lock)"
                    ) from exc
                _log.warning("taking over the %s", status.describe())
                _drop_lock(self.client, self.collection)
        else:
            detail = f": {reason(failure)}" if failure is not None else ""
            raise StoreError(f"cannot take the ingest lock {self.name}{detail}") from failure
        try:
            self._renew()
        except Exception:
            _drop_lock(self.client, self.collection)  # not held without its lease
            raise
        self._renewer = threading.Thread(target=self._keep, name="ingest-lock", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            _drop_lock(self.client, self.collection)
        except Exception:
            _log.warning("could not release the ingest lock %s", self.name)

    def _create(self, at: float | None = None) -> None:
        """Create the marker collection, its owner and time (``at``: now) in the same call.

        The stamp is the collection's description and, for engines that keep no
        description (Milvus Lite), the name of a field.
        """
        from pymilvus import DataType

        at = round(time.time() if at is None else at, 3)
        stamp = json.dumps({"owner": self.owner, "at": at})
        schema = self.client.create_schema(auto_id=False, description=stamp)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
        schema.add_field(_stamp_field(self.owner, at), DataType.INT64)
        self.client.create_collection(self.name, schema=schema)

    def _renew(self) -> None:

        lease = {"owner": self.owner, "renewed": time.time()}
        _meta_write(self.client, self.collection, {_key(self.collection, "lock"): ("lock", lease)})

    def _keep(self) -> None:
        while not self._stop.wait(LOCK_LEASE_SECONDS / 4):
            try:
                self._renew()
            except Exception as exc:  # the next renewal may get through
                _log.debug("could not renew the ingest lock %s: %s", self.name, reason(exc))


def ingest_lock_status(client: MilvusClient, collection: str) -> LockStatus | None:
    """The ingest lock held on ``collection`` (a server's; Milvus Lite has none), or None."""

    name = f"{collection}{_LOCK_SUFFIX}"
    try:
        described = client.describe_collection(name)
    except Exception:
        return None
    now = time.time()
    owner, taken = _lock_stamp(described)
    age = now - taken if taken is not None else _created_age(described, now)
    lease = _meta_rows(client, collection, "lock").get(_key(collection, "lock"), {})
    times = [
        t
        for t in (taken, lease.get("renewed") if owner and lease.get("owner") == owner else None)
        if isinstance(t, (int, float))
    ]
    renewed = now - max(times) if times else None
    abandoned = None
    if owner is None:
        if age is None or age > LOCK_OWNERLESS_SECONDS:
            abandoned = "it names no owner"
    elif _process_gone(owner):
        abandoned = "its process is gone"
    elif renewed is not None and renewed > LOCK_LEASE_SECONDS:
        abandoned = f"its lease expired (last renewed {renewed:.0f} s ago)"
    return LockStatus(collection, owner, age, renewed, abandoned)


def release_ingest_lock(client: MilvusClient, collection: str) -> LockStatus | None:
    """Release the ingest lock of ``collection`` whoever holds it; what was released."""
    status = ingest_lock_status(client, collection)
    if status is not None:
        _drop_lock(client, collection)
    return status


def _drop_lock(client: MilvusClient, collection: str) -> None:
    name = f"{collection}{_LOCK_SUFFIX}"
    if client.has_collection(name):
        client.drop_collection(name)
    _meta_delete(client, [_key(collection, "lock")])


_STAMP_PREFIX = "owner_"


def _stamp_field(owner: str, at: float) -> str:
    """A field name holding ``owner`` and ``at`` (hex of ``at|owner``, within Milvus's
    255-character name limit)."""
    return _STAMP_PREFIX + f"{at:.3f}|{owner}".encode()[:120].hex()


def _lock_stamp(described: dict[str, Any]) -> tuple[str | None, float | None]:
    """(owner, time taken) of a lock: from its stamp field or its description; older
    locks hold only the owner, in the description or in a property."""
    for field in described.get("fields", []):
        name = str(field.get("name", ""))
        if name.startswith(_STAMP_PREFIX):
            try:
                when, _, who = bytes.fromhex(name[len(_STAMP_PREFIX) :]).decode().partition("|")
                return (who or None), float(when)
            except ValueError:
                continue
    text = str(described.get("description") or "")
    try:
        stamp = json.loads(text)
    except ValueError:
        stamp = None
    if isinstance(stamp, dict):
        owner, at = stamp.get("owner"), stamp.get("at")
        return (str(owner) if owner else None, float(at) if isinstance(at, (int, float)) else None)
    legacy = text or str((described.get("properties") or {}).get("owner") or "")
    return (legacy if ":" in legacy else None), None


def _created_age(described: dict[str, Any], now: float) -> float | None:
    """Seconds since a collection was created, from Milvus's hybrid timestamp."""
    stamp = described.get("created_timestamp")
    if not isinstance(stamp, int) or stamp <= 0:
        return None
    return max(0.0, now - (stamp >> 18) / 1000)


def _process_gone(owner: str) -> bool:
    """True when ``owner`` (host:pid) is a process of this host that no longer runs."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- rows: every read and write of the collection's rows goes through these ---------------


def has_collection(client: MilvusClient, collection: str) -> bool:
    """Whether ``collection`` exists."""
    return bool(client.has_collection(collection))


def list_collections(client: MilvusClient) -> list[str]:
    """The collections the client may see (a cheap call that needs a signed-in user)."""
    return [str(name) for name in client.list_collections()]


def insert_rows(client: MilvusClient, collection: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (their vectors included)."""
    client.insert(collection, rows)


def upsert_rows(client: MilvusClient, collection: str, rows: list[dict[str, Any]]) -> None:
    """Insert or replace ``rows`` by id (a resumed copy writes each row once)."""
    client.upsert(collection, rows)


def delete_ids(client: MilvusClient, collection: str, ids: Sequence[str]) -> None:
    """Delete the rows with these ids, in pages."""
    ordered = sorted(ids)
    for start in range(0, len(ordered), _PAGE):
        client.delete(collection, ids=ordered[start : start + _PAGE])


def flush_collection(client: MilvusClient, collection: str) -> None:
    """Seal what was written (searches and a reopened Lite file see it)."""
    client.flush(collection)


def iter_rows(
    client: MilvusClient,
    collection: str,
    *,
    filter: str = "",
    output_fields: Sequence[str] = ("*",),
    page: int = _PAGE,
) -> Iterator[list[dict[str, Any]]]:
    """The rows matching ``filter``, in pages of at most ``page`` rows (a query
    iterator, closed however the caller stops)."""
    iterator = client.query_iterator(
        collection, batch_size=page, filter=filter, output_fields=list(output_fields)
    )
    try:
        while batch := iterator.next():
            yield batch
    finally:
        iterator.close()


def fetch_vectors(
    client: MilvusClient, collection: str, ids: Sequence[Any]
) -> dict[Any, list[float]]:
    """The dense vectors of the rows with these ids, by id."""
    rows = client.get(collection, ids=list(ids), output_fields=[VECTOR_FIELD])
    return {row[ID_FIELD]: row[VECTOR_FIELD] for row in rows}


def grant_user(
    client: MilvusClient,
    user: str,
    password: str,
    privileges: Sequence[tuple[str, str]],
    db_name: str,
) -> tuple[bool, list[dict[str, Any]]]:
    """Milvus RBAC: the user (created unless it exists), a role of its name holding
    ``privileges`` on every collection of ``db_name``, granted to it. Returns whether the
    user was created and the privileges its role holds.

    Raises:
        StoreError: Milvus refused a step (the message names it).
    """
    step = "list users"
    try:
        # The user first: if Milvus refuses it (a password too short), nothing is left behind.
        created = user not in _names(client.list_users())
        if created:
            step = f"create user {user}"
            client.create_user(user, password)
        step = "list roles"
        if user not in _names(client.list_roles()):
            step = f"create role {user}"
            client.create_role(user)
        for object_type, privilege in privileges:
            step = f"grant {privilege} to role {user}"
            client.grant_privilege(user, object_type, privilege, "*", db_name=db_name)
        step = f"grant role {user} to user {user}"
        client.grant_role(user, user)
        step = f"describe role {user}"
        granted = client.describe_role(user).get("privileges") or []
    except Exception as exc:
        raise StoreError(f"refused to {step}: {reason(exc)}") from exc
    return created, list(granted)


def _names(listed: Any) -> set[str]:
    """Names from ``list_roles`` / ``list_users`` (strings, or mappings naming them)."""
    names = set()
    for item in listed or []:
        if isinstance(item, dict):
            item = item.get("role_name") or item.get("user_name") or item.get("name")
        names.add(str(item))
    return names
