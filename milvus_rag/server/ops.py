"""Operations: ``/health`` (liveness), ``/ready`` (Milvus, the collection, its
embedding identity; the LLM endpoint reported) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from milvus_rag.errors import MilvusRAGError, MissingAPIKeyError
from milvus_rag.server.auth import require_key, require_role
from milvus_rag.server.state import AppState, app_state

if TYPE_CHECKING:
    from milvus_rag.settings import LLMSettings, Settings

__all__ = ["health", "metrics", "metrics_access", "ready", "router"]

#: Seconds /ready waits for the LLM endpoint (it only reports it).
_LLM_PROBE_TIMEOUT = 5.0

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness, without touching Milvus or the LLM."""
    return {"status": "ok"}


async def metrics_access(request: Request, state: AppState = Depends(app_state)) -> None:
    """Who may read ``/metrics``: admin keys, or anyone with ``server.metrics_public``."""
    if not state.settings.server.metrics_public:
        await require_key(request)
        await _admin(request)


_admin = require_role("admin")


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_access)])
async def metrics(state: AppState = Depends(app_state)) -> Response:
    """The app's Prometheus metrics, in Prometheus's text format."""
    assert state.telemetry.metrics is not None
    found = state.telemetry.metrics
    return Response(found.exposition(), media_type=found.content_type)


@router.get("/ready", response_model=None)
async def ready(request: Request, state: AppState = Depends(app_state)) -> Response:
    """Readiness: 200 when every required check passes, 503 otherwise. Each check's
    message (which names URIs) is shown to authenticated clients only."""
    found = await asyncio.gather(
        asyncio.to_thread(_milvus_checks, state.settings, state.retriever),
        _llm_check(state.settings.llm, state.llm_missing, state.custom_llm),
    )
    results = {**found[0], "llm": found[1]}
    is_ready = all(check["ok"] for check in results.values() if check["required"])
    # Messages name URIs, paths and counts of every scope: admins only. A wrong key counts
    # as a failure here too.
    if state.key is None:
        shown = True
    else:
        verdict, _, principal = state.key.verify(request)
        shown = verdict == "ok" and principal is not None and principal.may("admin")
    body = {
        "ready": is_ready,
        "checks": {
            name: check if shown else {k: v for k, v in check.items() if k != "message"}
            for name, check in results.items()
        },
    }
    return JSONResponse(state.redactor.redact_data(body), status_code=200 if is_ready else 503)


def _check(ok: bool, message: str, *, required: bool = True) -> dict[str, Any]:
    return {"ok": ok, "required": required, "message": message}


_NO_LITE_FILE = (
    "there is no Milvus Lite database at {uri}: run `milvus-rag ingest SOURCE` first, "
    "or fix milvus.uri"
)


def _milvus_checks(settings: Settings, retriever: Any) -> dict[str, dict[str, Any]]:
    """Milvus reachable, the collection present and not empty, its identity matching."""
    from milvus_rag.retriever import MilvusRAGRetriever

    if not isinstance(retriever, MilvusRAGRetriever):
        return {"retriever": _check(True, f"{type(retriever).__name__}: not checked")}
    from milvus_rag.embeddings import embeddings_from_settings
    from milvus_rag.store import (
        chunk_count,
        connect,
        count_chunks,
        ensure_collection,
        has_collection,
        reason,
    )

    settings = retriever.settings or settings
    milvus, name = settings.milvus, settings.milvus.collection
    skipped = _check(False, "not checked: Milvus cannot be reached")
    checks = {"milvus": skipped, "collection": skipped, "identity": skipped}
    if milvus.is_lite and not Path(milvus.uri).expanduser().exists():  # connecting creates it
        checks["milvus"] = _check(False, _NO_LITE_FILE.format(uri=milvus.uri))
        return checks
    try:
        client = connect(milvus)
    except MilvusRAGError as exc:
        checks["milvus"] = _check(False, str(exc))
        return checks
    try:
        checks["milvus"] = _check(True, f"{milvus.uri} is reachable")
        if not has_collection(client, name):
            checks["collection"] = _check(
                False, f"collection {name} does not exist: run `milvus-rag ingest SOURCE` first"
            )
            checks["identity"] = _check(False, f"not checked: no collection {name}")
            return checks
        if retriever.embeddings is None:  # the retriever's model: loaded once
            retriever.embeddings = embeddings_from_settings(settings)
        try:
            mode = None if retriever.mode == settings.retrieval.mode else retriever.mode
            ensure_collection(client, settings, retriever.embeddings, mode=mode)
            checks["identity"] = _check(True, f"collection {name} matches the embedding model")
        except MilvusRAGError as exc:
            checks["identity"] = _check(False, str(exc))
        chunks, views = count_chunks(client, name)
        checks["collection"] = (
            _check(True, f"collection {name} holds {chunk_count(chunks, views)}")
            if chunks + views
            else _check(False, f"collection {name} is empty: run `milvus-rag ingest SOURCE`")
        )
    except Exception as exc:  # the server failed midway
        message = f"{milvus.uri}: {reason(exc)}"
        checks = {
            key: check if check["ok"] else _check(False, message) for key, check in checks.items()
        }
    finally:
        client.close()
    return checks


async def _llm_check(
    llm: LLMSettings, missing: MissingAPIKeyError | None, custom: bool
) -> dict[str, Any]:
    """The LLM endpoint answering ``GET /models`` (reported; not needed to be ready)."""
    if custom:
        return _check(True, "a chat model given to create_app: not checked", required=False)
    if missing is not None:
        return _check(False, str(missing), required=False)
    from milvus_rag.llm import probe_endpoint

    probe = await asyncio.to_thread(probe_endpoint, llm, min(llm.timeout, _LLM_PROBE_TIMEOUT))
    return _check(probe.ok, probe.message, required=False)
