"""The server package's shape: every route a module-level function, ``create_app`` short."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute

import milvus_rag.server.app
from milvus_rag.server import create_app
from milvus_rag.settings import Settings

SERVER = Path(milvus_rag.server.app.__file__).parent


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, inside included routers too (FastAPI may include them lazily)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _routes(inner.routes) if inner is not None else [route]


def test_every_route_of_ours_is_a_module_level_function(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings())
    ours = [
        route
        for route in _routes(app.routes)
        if isinstance(route, APIRoute) and route.endpoint.__module__.startswith("milvus_rag")
    ]
    assert {route.path for route in ours} >= {
        "/health",
        "/ready",
        "/login",
        "/logout",
        "/v1/models",
        "/v1/chat/completions",
        "/openapi.json",
    }
    for route in ours:
        endpoint = route.endpoint
        assert "<locals>" not in endpoint.__qualname__, f"{route.path}: {endpoint.__qualname__}"
        module = inspect.getmodule(endpoint)
        assert module is not None and getattr(module, endpoint.__name__) is endpoint


def test_create_app_is_short_and_no_server_module_is_long() -> None:
    for path in SERVER.glob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 600, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.name}: {node.name} is {length} lines"
                if path.name == "app.py" and node.name == "create_app":
                    assert length <= 60
