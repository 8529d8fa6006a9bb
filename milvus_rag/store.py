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

import json
import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable
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

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_milvus import Milvus
    from pymilvus import MilvusClient

    from milvus_rag.embeddings import MilvusModelEmbeddings
    from milvus_rag.settings import MilvusSettings, Settings

__all__ = [
    "IDENTITY_PROPERTY",
    "ID_FIELD",
    "INGESTS_PROPERTY",
    "SPARSE_FIELD",
    "TEXT_FIELD",
    "VECTOR_FIELD",
    "IngestLock",
    "StoredSource",
    "check_identity",
    "collection_identity",
    "connect",
    "connect_existing",
    "count_entities",
    "create_collection",
    "delete_sources",
    "drop_collection",
    "ensure_collection",
    "has_sparse_field",
    "ingest_records",
    "list_sources",
    "lite_engine",
    "lite_file_engine",
    "load_collection",
    "open_vector_store",
    "reason",
    "record_ingest",
    "row_fields",
    "search_rows",
    "stored_analyzer",
    "supports_bm25",
    "supports_filter_templates",
]

ID_FIELD = "id"
TEXT_FIELD = "text"
VECTOR_FIELD = "vector"
SPARSE_FIELD = "sparse"
IDENTITY_PROPERTY = "milvus_rag.embedding"
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
    return args


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
                "process, or serve the file with `milvus-lite server` and set milvus.uri to "
                "its http:// address"
            )
        return StoreUnavailableError(
            f"Milvus Lite database {milvus.uri} cannot be opened ({reason(exc)})"
        )
    return StoreUnavailableError(
        f"Milvus at {milvus.uri} cannot be reached ({reason(exc)}); check that the server "
        "is running and milvus.uri / MILVUS_RAG_MILVUS__TOKEN are right"
    )


def _lite_file_locked(path: Path) -> bool:
    """True when another process holds Milvus Lite's lock on ``path``."""
    import fcntl

    # milvus-lite 3.x: the database is a folder holding an flock-ed LOCK file.
    candidates = [path / "LOCK", path.parent / f".{path.name}.lock", path]
    for candidate in candidates:
        if not candidate.exists() or candidate.is_dir():
            continue
        try:
            with candidate.open("rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        except OSError:
            continue
    return False


def _quiet_lite_logger() -> None:
    """milvus-lite logs a full traceback before pymilvus raises; the error says it all."""
    logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).strip().splitlines()[0][:200]


def collection_identity(client: MilvusClient, collection: str) -> dict[str, Any] | None:
    """The embedding record stored on ``collection``, or ``None`` if it has none."""
    properties = client.describe_collection(collection).get("properties") or {}
    raw = properties.get(IDENTITY_PROPERTY)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


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


def load_collection(client: MilvusClient, collection: str) -> None:
    """Load ``collection`` unless it is loaded (a killed writer leaves Milvus Lite's released)."""
    from pymilvus.client.types import LoadState

    state = client.get_load_state(collection).get("state")
    if state != LoadState.Loaded:
        client.load_collection(collection)


def drop_collection(client: MilvusClient, collection: str) -> None:
    """Drop ``collection`` if it exists."""
    if client.has_collection(collection):
        client.drop_collection(collection)


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
    client.create_collection(
        name,
        schema=schema,
        index_params=_index_params(client, settings, hybrid),
        consistency_level=settings.milvus.consistency,
    )
    record = dict(identity, metric=settings.milvus.metric)
    client.alter_collection_properties(name, properties={IDENTITY_PROPERTY: json.dumps(record)})


def check_identity(client: MilvusClient, settings: Settings, identity: dict[str, Any]) -> None:
    """Refuse a collection built by another embedding model, dimension or metric."""
    name = settings.milvus.collection
    stored = collection_identity(client, name)
    if stored is None:
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
            Hybrid falls back to dense, with one warning, on servers without BM25.

    Raises:
        EmbeddingMismatchError, SchemaMismatchError, EmptyCollectionError, StoreError.
    """
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
            check_identity(client, settings, identity)
            load_collection(client, name)
            if hybrid and not has_sparse_field(client, name):
                raise SchemaMismatchError(
                    f"collection {name} was built for dense search and has no BM25 field; "
                    "recreate it for hybrid search (ingest --recreate --mode hybrid, or "
                    "migrate --recreate)"
                )
            if hybrid and create:
                _warn_if_analyzer_differs(client, settings)
        else:
            create_collection(client, settings, identity, hybrid=hybrid)
        return hybrid
    except MilvusRAGError:
        raise
    except Exception as exc:
        raise StoreError(f"{_describe_uri(settings.milvus)}: {reason(exc)}") from exc


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


def _langchain_store(settings: Settings, embeddings: Any, *, hybrid: bool) -> Milvus:
    from langchain_milvus import BM25BuiltInFunction, Milvus

    _before_first_search()
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
    """One source file in the collection: where it came from, its rows and chunks."""

    __slots__ = ("chunkers", "ids", "origin", "positions", "source")

    def __init__(self, source: str, origin: str) -> None:
        self.source = source
        self.origin = origin
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
    """The source files stored in ``collection`` (those matching ``expr``), sorted by path.

    Reads every row's ``source``, ``origin``, ``position`` and ``chunker`` in pages;
    two origins holding the same path are two entries.
    """
    found: dict[tuple[str, str], StoredSource] = {}
    iterator = client.query_iterator(
        collection,
        batch_size=_PAGE,
        filter=expr or "",
        output_fields=[ID_FIELD, "source", "origin", "position", "chunker"],
    )
    try:
        while batch := iterator.next():
            for row in batch:
                key = (str(row.get("source")), str(row.get("origin")))
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = StoredSource(*key)
                entry.ids.append(str(row[ID_FIELD]))
                if isinstance(row.get("position"), int):
                    entry.positions.add(row["position"])
                if row.get("chunker"):
                    entry.chunkers.add(str(row["chunker"]))
    finally:
        iterator.close()
    return sorted(found.values(), key=lambda s: (s.source, s.origin))


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
    records = ingest_records(client, collection)
    recorded = {run["origin"] for run in records["runs"]}
    gone = {
        origin
        for origin in {entry.origin for entry in sources} & recorded
        if not client.query(
            collection, filter=eq("origin", origin), output_fields=[ID_FIELD], limit=1
        )
    }
    if gone:
        records["runs"] = [run for run in records["runs"] if run["origin"] not in gone]
        _write_records(client, collection, records)
    return len(ids)


def ingest_records(client: MilvusClient, collection: str) -> dict[str, Any]:
    """What :func:`record_ingest` kept, oldest run first::

    {"runs": [{"origin": ..., "glob": ... or None, "at": ISO time, "splitter": ...}],
     "chunkers": {chunker fingerprint: splitter name}}
    """
    properties = client.describe_collection(collection).get("properties") or {}
    try:
        record = json.loads(properties.get(INGESTS_PROPERTY) or "{}")
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    runs = record.get("runs")
    record["runs"] = [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []
    if not isinstance(record.get("chunkers"), dict):
        record["chunkers"] = {}
    return record


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
    """Record on the collection that ``origin`` (the files matching ``glob``) was just
    ingested with ``splitter``; ``at`` defaults to now (ISO 8601, UTC).

    Kept in the collection property :data:`INGESTS_PROPERTY` (chunks are not touched),
    one run per origin and glob (the latest), read back by :func:`ingest_records`;
    ``milvus-rag sources`` shows it.
    """
    from datetime import datetime, timezone

    records = ingest_records(client, collection)
    runs = [r for r in records["runs"] if (r.get("origin"), r.get("glob")) != (origin, glob)]
    when = at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs.append({"origin": origin, "glob": glob, "at": when, "splitter": splitter})
    records["runs"] = runs[-MAX_RECORDED_RUNS:]
    records["chunkers"][chunker] = splitter
    _write_records(client, collection, records)


def _write_records(client: MilvusClient, collection: str, records: dict[str, Any]) -> None:
    client.alter_collection_properties(
        collection, properties={INGESTS_PROPERTY: json.dumps(records, ensure_ascii=False)}
    )


class IngestLock:
    """One ingest per collection at a time.

    Milvus Lite already allows one process per database file. On a server, the
    lock is a marker collection: creating a collection is atomic, so a second
    ingest fails to create it and is refused. A lock left by a killed process on
    this host is broken when that process is gone.
    """

    def __init__(self, client: MilvusClient, settings: Settings) -> None:
        self.client = client
        self.enabled = not settings.milvus.is_lite
        self.name = f"{settings.milvus.collection}__ingest_lock"
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    def __enter__(self) -> IngestLock:
        if not self.enabled:
            return self
        for _ in range(2):
            try:
                self._create()
                return self
            except Exception as exc:
                holder = self._holder()
                if holder is None or not self._stale(holder):
                    raise IngestLockedError(
                        f"another ingest ({holder or 'unknown'}) is writing collection "
                        f"{self.name.removesuffix('__ingest_lock')}; wait for it to finish"
                    ) from exc
                self.client.drop_collection(self.name)
        raise IngestLockedError(f"cannot take the ingest lock {self.name}")

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            try:
                self.client.drop_collection(self.name)
            except Exception:
                _log.warning("could not release the ingest lock %s", self.name)

    def _create(self) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, description=self.owner)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
        self.client.create_collection(self.name, schema=schema)
        self.client.alter_collection_properties(self.name, properties={"owner": self.owner})

    def _holder(self) -> str | None:
        try:
            props = self.client.describe_collection(self.name).get("properties") or {}
        except Exception:
            return None
        owner = props.get("owner")
        return str(owner) if owner else None

    def _stale(self, holder: str) -> bool:
        host, _, pid = holder.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
