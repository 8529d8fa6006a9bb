"""Documents through the server: ``POST /documents`` (an upload or a URL, as a job),
``GET /documents/jobs/{id}``, ``GET /documents`` and ``DELETE /documents/{source}``.

Every route stays in the key's scopes; uploads and deletes need a ``writer`` (or
``admin``) key. An upload is ingested with every guard ``milvus-rag ingest`` has (size
and archive limits, zip slip, SSRF, the parser sandbox and its timeouts, format
detection) by the sync engine, so uploading the same content again writes nothing and a
restart mid-job leaves the collection as a rerun would. Jobs run one at a time in the
server process (the one writer of a Milvus Lite file).
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from milvus_rag.errors import MilvusRAGError
from milvus_rag.keys import Principal, check_name
from milvus_rag.scopes import restricted_to
from milvus_rag.server.auth import principal_of, require_key, require_role
from milvus_rag.server.jobs import Job
from milvus_rag.server.state import AppState, app_state
from milvus_rag.server.status import Refused

if TYPE_CHECKING:
    from collections.abc import Callable

    from milvus_rag.settings import Settings

__all__ = ["add_document", "delete_document", "document_job", "list_documents", "router"]

router = APIRouter(dependencies=[Depends(require_key)])
_writer = Depends(require_role("writer"))
#: A file name as uploaded: no folders, no control characters.
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


class UrlDocument(BaseModel):
    """``POST /documents`` with a JSON body: a URL to ingest into a scope."""

    url: str
    scope: str | None = None


def _target_scope(principal: Principal, asked: Any, default: str) -> str:
    """The scope an upload goes into: the one asked for (within the key's scopes), else
    the key's only scope (``ingest.scope`` for an admin)."""
    if asked in (None, ""):
        if principal.scopes is None:
            return default
        if len(principal.scopes) == 1:
            return principal.scopes[0]
        raise Refused(f"key {principal.name} writes to several scopes: name one with scope")
    try:
        scope = check_name(asked, "scope")
    except MilvusRAGError as exc:
        raise Refused(str(exc)) from None
    if not principal.reads(scope):
        raise HTTPException(403, f"key {principal.name} may not write to scope {scope}")
    return scope


def _upload_name(name: str | None) -> str:
    base = Path(name or "").name
    if not base or base in (".", "..") or _BAD_NAME.search(base) or len(base) > 200:
        raise Refused("the upload needs a file name (no folders or control characters)")
    return base


def _upload_dir(settings: Settings) -> Path:
    """Where uploads wait for their ingest: a stable path per collection and scope, so the
    same file name in the same scope is the same document (an update, not a copy)."""
    configured = settings.server.upload_dir
    root = configured or Path(tempfile.gettempdir()) / "milvus-rag-uploads"
    return Path(root).expanduser() / settings.milvus.collection


def _ingest(settings: Settings, source: str | Path, scope: str) -> dict[str, Any]:
    from milvus_rag.sync import ingest

    report = ingest(source, settings, scope=scope)
    return report.as_dict()


def _ingest_upload(settings: Settings, staged: Path, final: Path, scope: str) -> dict[str, Any]:
    """Ingest an uploaded file under its stable name, then remove it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, final)
    try:
        return _ingest(settings, final, scope)
    finally:
        final.unlink(missing_ok=True)


async def _staged_upload(request: Request, settings: Settings) -> tuple[Path, str, Any]:
    """The multipart ``file`` written to a private temporary file: (path, name, scope)."""
    form = await request.form(max_files=1, max_fields=4)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise Refused("send the document as the multipart field file (or JSON with url)")
    name = _upload_name(upload.filename)
    folder = _upload_dir(settings) / ".staging"
    folder.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(dir=folder, suffix=Path(name).suffix)
    with os.fdopen(fd, "wb") as out:
        while chunk := await upload.read(1024 * 1024):
            out.write(chunk)
    return Path(staged), name, form.get("scope")


@router.post("/documents", status_code=202, dependencies=[_writer])
async def add_document(request: Request, state: AppState = Depends(app_state)) -> JSONResponse:
    """Ingest an upload (multipart field ``file``) or a URL (JSON ``{"url"}``) into a scope
    of the key, as a job: 202 with the job; ``GET /documents/jobs/{id}`` has its result."""
    principal = principal_of(request)
    settings = state.settings
    kind = request.headers.get("content-type", "")
    work: Callable[[], dict[str, Any]]
    if kind.startswith("multipart/form-data"):
        staged, name, asked = await _staged_upload(request, settings)
        try:
            scope = _target_scope(principal, asked, settings.ingest.scope)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        final = _upload_dir(settings) / scope / name

        def work() -> dict[str, Any]:
            return _ingest_upload(settings, staged, final, scope)

        source = name
    else:
        try:
            body = UrlDocument.model_validate_json(await request.body())
        except ValueError:
            raise Refused('send JSON {"url": ..., "scope": ...} or a multipart file') from None
        scope = _target_scope(principal, body.scope, settings.ingest.scope)
        url = body.url

        def work() -> dict[str, Any]:
            return _ingest(settings, url, scope)

        source = url
    job = Job(uuid.uuid4().hex, principal.name, scope, source)
    state.jobs.start(job, work)
    return JSONResponse(
        job.view(), status_code=202, headers={"Location": f"/documents/jobs/{job.id}"}
    )


@router.get("/documents/jobs/{job_id}")
async def document_job(
    job_id: str, request: Request, state: AppState = Depends(app_state)
) -> dict[str, Any]:
    """An upload job: ``queued``, ``running``, ``done`` (with the ingest report) or
    ``failed`` (with the error). Only its key, or an admin, sees it."""
    principal = principal_of(request)
    job = state.jobs.get(job_id)
    if job is None or not (principal.may("admin") or job.owner == principal.name):
        raise HTTPException(404, f"no job {job_id}")
    shown: dict[str, Any] = state.redactor.redact_data(job.view())
    return shown


def _listing(settings: Settings, source: str | None) -> list[Any]:
    from milvus_rag.filters import eq
    from milvus_rag.store import SOURCE_FIELD, connect, has_collection, list_sources

    client = connect(settings.milvus)
    try:
        if not has_collection(client, settings.milvus.collection):
            return []
        expr = str(eq(SOURCE_FIELD, source)) if source is not None else None
        return list_sources(client, settings.milvus.collection, expr)
    finally:
        client.close()


@router.get("/documents")
async def list_documents(state: AppState = Depends(app_state)) -> dict[str, Any]:
    """The documents in the key's scopes: source, scope and chunks."""
    entries = await asyncio.to_thread(_listing, state.settings, None)
    documents = [{"source": e.source, "scope": e.scope, "chunks": e.chunks} for e in entries]
    return {"documents": documents}


@router.delete("/documents/{source:path}", dependencies=[_writer])
async def delete_document(
    source: str, request: Request, scope: str | None = None, state: AppState = Depends(app_state)
) -> dict[str, Any]:
    """Delete a document (every scope of the key holding it, or ``?scope=NAME``)."""
    principal = principal_of(request)
    if scope is not None:
        scope = _target_scope(principal, scope, state.settings.ingest.scope)

    def remove() -> int:
        from milvus_rag.store import connect, delete_sources

        entries = [e for e in _listing(state.settings, source) if scope in (None, e.scope)]
        if not entries:
            return -1
        client = connect(state.settings.milvus)
        try:
            return delete_sources(client, state.settings.milvus.collection, entries)
        finally:
            client.close()

    with restricted_to(principal.scopes):
        deleted = await asyncio.to_thread(remove)
    if deleted < 0:
        raise HTTPException(404, f"no document {source} in this key's scopes")
    return {"source": source, "scope": scope, "rows_deleted": deleted}
