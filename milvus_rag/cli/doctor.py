"""``milvus-rag doctor``: check the set-up, one line per check with its fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from milvus_rag.cli._common import (
    CollectionOption,
    ConfigOption,
    JsonOption,
    UriOption,
    command,
    echo_json,
    printable,
    settings_for,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.settings import LLMEndpoint, LLMSettings, Settings

#: Seconds the LLM check waits (at most llm.timeout).
LLM_CHECK_TIMEOUT = 10.0


@dataclass
class Check:
    """One check's outcome: what was checked, what was found, and how to fix a failure."""

    name: str
    status: Literal["ok", "note", "fail", "skip"]
    detail: str
    fix: str = ""

    def line(self) -> str:
        label = {"ok": "ok", "note": "note", "fail": "FAIL", "skip": "skip"}[self.status]
        fix = f" -> fix: {self.fix}" if self.fix and self.status == "fail" else ""
        return printable(f"{label:<4}  {self.name:<10}  {self.detail}{fix}")


@command
def doctor(
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip the checks that need the network (LLM).")
    ] = False,
    as_json: JsonOption = False,
    uri: UriOption = None,
    collection: CollectionOption = None,
    config: ConfigOption = None,
) -> None:
    """Check config, environment, model, Milvus, the collection and the LLM endpoint.

    Prints one line per check, with the fix for each failure; exits non-zero when
    any check fails. --offline skips the LLM request.
    """
    checks = run_checks(config, uri=uri, collection=collection, offline=offline)
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        echo_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        for check in checks:
            typer.echo(check.line())
        typer.echo(
            f"{len(failed)} of {len(checks)} checks failed"
            if failed
            else f"all {len(checks)} checks passed"
        )
    if failed:
        raise typer.Exit(1)


def run_checks(
    config: Path | None,
    *,
    uri: str | None = None,
    collection: str | None = None,
    offline: bool = False,
) -> list[Check]:
    """Every check in order; a check whose prerequisite failed is skipped."""
    from milvus_rag.errors import ConfigError

    checks = env_checks()
    try:
        settings = settings_for(config, uri=uri, collection=collection, warn_unknown_env=False)
    except ConfigError as exc:
        checks.insert(0, Check("config", "fail", str(exc), "correct the setting named"))
        checks.append(Check("model", "skip", "needs valid settings"))
        checks.append(Check("milvus", "skip", "needs valid settings"))
        return checks
    where = str(settings.config_file) if settings.config_file else "no config file: defaults"
    checks.insert(0, Check("config", "ok", f"{where} (+ MILVUS_RAG_* variables and flags)"))
    model = model_check(settings, offline)
    checks.append(model)
    checks.extend(milvus_checks(settings, model_ok=model.status == "ok"))
    checks.extend(llm_checks(settings.llm, offline))
    return checks


def env_checks() -> list[Check]:
    """A ``MILVUS_RAG_*`` variable that names no setting fails, naming the closest one."""
    from milvus_rag.settings import unknown_env_vars

    unknown = unknown_env_vars()
    if not unknown:
        return [Check("env", "ok", "every MILVUS_RAG_* variable names a setting")]
    return [
        Check(
            "env",
            "fail",
            f"{name} is not a milvus-rag setting (ignored)",
            f"rename it to {suggestion}" if suggestion else "unset it, or see `milvus-rag config`",
        )
        for name, suggestion in unknown
    ]


def model_check(settings: Settings, offline: bool) -> Check:
    """The embedding model's files are there (a local folder, or the hub cache)."""
    from milvus_rag.embeddings import hub_model_usable

    section = settings.embedding
    if section.model_dir is not None:
        folder = section.model_dir
        missing = [name for name in ("model.onnx", "config.json") if not (folder / name).is_file()]
        if not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            missing.append("tokenizer.json")
        if missing:
            return Check(
                "model",
                "fail",
                f"embedding.model_dir {folder} lacks {', '.join(missing)}",
                "copy the model's files there (model.onnx, tokenizer.json, config.json)",
            )
        return Check("model", "ok", f"{folder} holds model.onnx, its tokenizer and config.json")
    if hub_model_usable(section.model, offline=True):
        return Check("model", "ok", f"{section.model} is in the Hugging Face cache")
    if not offline and hub_model_usable(section.model):
        return Check(
            "model", "ok", f"{section.model} downloads from the Hugging Face hub on first use"
        )
    return Check(
        "model",
        "fail",
        f"{section.model} is not in the Hugging Face cache and the hub cannot be reached",
        "set embedding.model_dir to a local folder with model.onnx and its tokenizer",
    )


def milvus_checks(settings: Settings, *, model_ok: bool) -> list[Check]:
    """Milvus reachable (a Lite file present and not locked by another process), then
    the collection."""
    from milvus_rag.errors import StoreError
    from milvus_rag.store import connect

    milvus = settings.milvus
    skip_collection = Check("collection", "skip", "needs Milvus")
    if milvus.is_lite and not Path(milvus.uri).expanduser().exists():
        return [
            Check(
                "milvus",
                "fail",
                f"there is no Milvus Lite database at {milvus.uri}",
                "run `milvus-rag ingest SOURCE`, or set milvus.uri (--uri)",
            ),
            skip_collection,
        ]
    try:
        client = connect(milvus)  # a Lite file open in another process: StoreLockedError
    except StoreError as exc:
        return [
            _failed("milvus", exc, "start Milvus, or fix milvus.uri and its token"),
            skip_collection,
        ]
    try:
        kind = "Milvus Lite database" if milvus.is_lite else "Milvus at"
        checks = [Check("milvus", "ok", f"{kind} {milvus.uri} is reachable")]
        checks.append(collection_check(client, settings, model_ok=model_ok))
        for extra in (scope_check(client, settings), lock_check(client, settings)):
            if extra is not None:
                checks.append(extra)
        return checks
    finally:
        client.close()


def _failed(name: str, exc: Exception, fix: str) -> Check:
    """A failed check from a typed error: its message is "problem; what to do"."""
    problem, _, advice = str(exc).partition("; ")
    return Check(name, "fail", problem, advice or fix)


def collection_check(client: MilvusClient, settings: Settings, *, model_ok: bool) -> Check:
    """The collection exists, holds chunks and was built by the configured model and metric."""
    from milvus_rag.embeddings import embeddings_from_settings
    from milvus_rag.errors import MilvusRAGError
    from milvus_rag.store import (
        check_identity,
        chunk_count,
        count_chunks,
        has_collection,
        has_sparse_field,
        load_collection,
        supports_bm25,
    )

    name = settings.milvus.collection
    ingest = "run `milvus-rag ingest SOURCE` (or set milvus.collection, --collection)"
    try:
        if not has_collection(client, name):
            return Check("collection", "fail", f"collection {name} does not exist", ingest)
        load_collection(client, name)
        chunks, views = count_chunks(client, name)
        stored = chunk_count(chunks, views)
        if chunks + views == 0:
            return Check("collection", "fail", f"collection {name} is empty", ingest)
        hybrid = has_sparse_field(client, name)
        # retrieval.mode hybrid searches a dense collection dense, as ask and serve do.
        mode = "hybrid" if hybrid else "dense"
        if settings.retrieval.mode == "hybrid" and not hybrid:
            mode = (
                "dense (retrieval.mode hybrid searches it dense; ingest --recreate for hybrid)"
                if supports_bm25(client)
                else "dense (this server has no BM25: retrieval.mode hybrid searches dense)"
            )
        if not model_ok:
            return Check("collection", "skip", f"collection {name}: {stored}; model not checked")
        check_identity(client, settings, embeddings_from_settings(settings).identity())
    except MilvusRAGError as exc:
        return _failed(
            "collection",
            exc,
            "re-ingest with --recreate, or restore the embedding settings it was built with",
        )
    return Check(
        "collection",
        "ok",
        f"collection {name}: {stored}, {mode}, built by the configured model",
    )


def scope_check(client: MilvusClient, settings: Settings) -> Check | None:
    """On a server: whether the scope is the collection's partition key (a scope's search
    then touches only its partitions); a collection made before keeps it a dynamic
    field, searched as well, and gets a note. None on Milvus Lite and without a
    collection."""
    from milvus_rag.store import has_collection, scope_field_options, scope_is_partition_key

    name = settings.milvus.collection
    try:
        if settings.milvus.is_lite or not has_collection(client, name):
            return None
        if scope_is_partition_key(client, name):
            return Check("scope", "ok", f"collection {name}: the scope is its partition key")
        if scope_field_options(client) is None:  # a Milvus Lite 2.5 server: no partition key
            return None
    except Exception:
        return None
    return Check(
        "scope",
        "note",
        f"collection {name} keeps the scope in a dynamic field, not the partition key; "
        "`ingest --recreate` (or `migrate` into a new collection) makes it the partition "
        "key, so that a scope's search touches only its partitions",
    )


def lock_check(client: MilvusClient, settings: Settings) -> Check | None:
    """An ingest lock on the collection (a server's): its owner and age; an abandoned
    one fails with the way out. None when no lock is held."""
    from milvus_rag.store import ingest_lock_status

    if settings.milvus.is_lite:
        return None
    try:
        status = ingest_lock_status(client, settings.milvus.collection)
    except Exception:
        return None
    if status is None:
        return None
    if status.abandoned:
        return Check(
            "lock",
            "fail",
            status.describe(),
            "the next ingest takes it over; `milvus-rag unlock` releases it now",
        )
    return Check("lock", "ok", f"{status.describe()} (an ingest is running)")


def llm_checks(llm: LLMSettings, offline: bool) -> list[Check]:
    """Each endpoint (primary, then fallbacks) reachable with its key accepted."""
    checks = []
    for position, endpoint in enumerate(llm.endpoints()):
        name = "llm" if position == 0 else f"fallback {position}"
        if offline:
            checks.append(Check(name, "skip", f"{endpoint.base_url} not checked (--offline)"))
        else:
            checks.append(endpoint_check(name, endpoint, min(llm.timeout, LLM_CHECK_TIMEOUT)))
    return checks


def endpoint_check(name: str, endpoint: LLMSettings | LLMEndpoint, timeout: float) -> Check:
    """One cheap request: ``GET {base_url}/models`` with the key."""
    from milvus_rag.llm import probe_endpoint

    probe = probe_endpoint(endpoint, timeout)
    return Check(name, "ok" if probe.ok else "fail", probe.message, probe.fix or "")
