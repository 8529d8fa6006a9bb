"""API documentation behind the key: ``/openapi.json``, ``/docs`` (Swagger UI) and
``/redoc``, their scripts served from the ``fastapi-offline`` package (no CDN); without
it, only ``/openapi.json``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse

from milvus_rag.server.auth import require_key

__all__ = ["install_docs", "openapi", "redoc", "router", "swagger"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_key)])


@router.get("/openapi.json")
async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger(request: Request) -> Response:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="milvus-rag: API",
        swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs-assets/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # no call to an online validator
    )


@router.get("/redoc")
async def redoc(request: Request) -> Response:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}/openapi.json",
        title="milvus-rag: API",
        redoc_js_url=f"{root}/docs-assets/redoc.standalone.js",
        redoc_favicon_url=f"{root}/docs-assets/favicon.png",
        with_google_fonts=False,
    )


def install_docs(app: FastAPI) -> None:
    """The documentation routes on ``app`` (``/openapi.json`` only without
    ``fastapi-offline``: the pages would need a CDN)."""
    try:
        import fastapi_offline
    except ImportError:
        app.add_api_route(
            "/openapi.json", openapi, include_in_schema=False, dependencies=[Depends(require_key)]
        )
        return
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    app.include_router(router)
