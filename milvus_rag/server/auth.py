"""Who gets in: the API key (bearer or session cookie), the failed-key limit, ``/login``
and ``/logout``.

Every route but ``/health``, ``/ready`` and ``/login`` depends on :func:`require_key`.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPBearer

from milvus_rag.auth import AuthLimiter, Sessions, SessionStore
from milvus_rag.keys import ADMIN_NAME, KeyRing, Principal, RateLimiter, Role, digest_of
from milvus_rag.scopes import restrict
from milvus_rag.server.logs import loggable, server_log

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from milvus_rag.settings import ServerSettings

__all__ = [
    "COOKIE_NAME",
    "OPEN",
    "Gate",
    "LoginNeeded",
    "Verdict",
    "mcp_authorize",
    "principal_of",
    "require_key",
    "require_role",
    "router",
    "to_login",
]

#: The login cookie: a signed, expiring session (:class:`milvus_rag.auth.Sessions`).
COOKIE_NAME = "milvus_rag_login"

#: What checking a request's key found.
Verdict = Literal["ok", "missing", "wrong", "throttled"]


class Gate:
    """The server's keys: checks a bearer key (in constant time) or a session cookie,
    counting wrong keys per client address (:class:`~milvus_rag.auth.AuthLimiter`) and
    requests per key (:class:`~milvus_rag.keys.RateLimiter`).

    A session cookie is ``NAME~TOKEN``: the key's name and a session signed under a secret
    derived from the key's digest, so revoking the key ends its sessions too.
    """

    def __init__(
        self,
        ring: KeyRing,
        limits: ServerSettings,
        store: SessionStore,
        clock: Callable[[], float] | None,
    ) -> None:
        self.ring = ring
        self.ttl = limits.session_ttl
        self.store = store
        self.clock = clock or time.time
        self.limiter = AuthLimiter(limits.max_auth_failures, clock or time.monotonic)
        self.rate = RateLimiter(limits.key_rate_per_minute, clock or time.monotonic)

    @classmethod
    def from_settings(
        cls, limits: ServerSettings, store: SessionStore, clock: Callable[[], float] | None
    ) -> Gate | None:
        """The gate of ``server.api_key``, ``server.keys`` and ``server.keys_file``; None
        when none is set (an open server).

        Raises:
            ConfigError: the keys file or a key in the settings is not valid.
        """
        fixed = [Principal.from_record(r, "server.keys") for r in limits.keys]
        if limits.api_key is not None:
            digest = digest_of(limits.api_key.get_secret_value())
            fixed.insert(0, Principal(ADMIN_NAME, "admin", None, digest))
        if not fixed and limits.keys_file is None:
            return None
        ring = KeyRing(limits.keys_file, fixed)
        if ring.file is not None:
            ring.file.load()  # a broken file is a clear error at start
        return cls(ring, limits, store, clock)

    def _sessions(self, principal: Principal) -> Sessions:
        return Sessions(self.store, principal.digest, self.ttl, self.clock)

    def issue(self, principal: Principal) -> str:
        """A new session cookie for ``principal``."""
        return f"{principal.name}~{self._sessions(principal).issue()}"

    def session(self, cookie: str) -> Principal | None:
        """The principal of a valid session cookie (its key not revoked); None otherwise."""
        name, _, token = cookie.partition("~")
        principal = self.ring.named(name) if token else None
        if principal is None or not self._sessions(principal).valid(token):
            return None
        return principal

    def end(self, cookie: str) -> None:
        """End the session of ``cookie`` on every worker (a no-op for an invalid one)."""
        name, _, token = cookie.partition("~")
        principal = self.ring.named(name) if token else None
        if principal is not None:
            self._sessions(principal).revoke(token)

    def attempt(self, request: Request, given: str) -> tuple[Verdict, int, Principal | None]:
        """Check a key a client sent: ``("ok" | "wrong" | "throttled", seconds to wait,
        whose key it is)``.

        A throttled client's key is not checked at all (it could be guessing still).
        """
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.wait(client)
        if wait:
            return "throttled", wait, None
        principal = self.ring.lookup(given)
        if principal is not None:
            return "ok", 0, principal
        left = self.limiter.failed(client)
        where = f"{request.method} {loggable(request.url.path)}"
        server_log.warning(
            "failed authentication from %s on %s: wrong API key%s",
            client,
            where,
            "" if left else "; its next attempts get 429 for a while (server.max_auth_failures)",
        )
        return "wrong", 0, None

    def verify(self, request: Request) -> tuple[Verdict, int, Principal | None]:
        """Whether ``request`` is let in, and as whom: a valid session cookie, else its
        bearer key (``"missing"`` without either)."""
        principal = self.session(request.cookies.get(COOKIE_NAME, ""))
        if principal is not None:
            return "ok", 0, principal
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return "missing", 0, None
        return self.attempt(request, given.strip())


#: Who a request is on a server without keys: everyone may do everything.
OPEN = Principal("anonymous", "admin", None)


def principal_of(request: Request) -> Principal:
    """Who the request is (set by :func:`require_key`)."""
    principal: Principal = getattr(request.state, "principal", OPEN)
    return principal


class LoginNeeded(Exception):
    """A browser asked for a page without the key: send it to the login form."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _key(request: Request) -> Gate | None:
    key: Gate | None = request.app.state.rag.key
    return key


# Declared for the OpenAPI schema (Swagger's "Authorize"); the check reads the request.
_scheme = HTTPBearer(auto_error=False, description="MILVUS_RAG_SERVER__API_KEY")


async def require_key(request: Request, credentials: Any = Depends(_scheme)) -> None:
    """The dependency guarding every route but /health, /ready and /login."""
    key = _key(request)
    if key is None:
        request.state.principal = OPEN
        restrict(None)
        return
    verdict, wait, principal = key.verify(request)
    if verdict == "ok" and principal is not None:
        request.state.principal = principal
        request.state.key_name = principal.name
        # Every search, listing and delete this request makes stays in the key's scopes.
        restrict(principal.scopes)
        wait = key.rate.wait(principal)
        if wait:
            raise HTTPException(
                status_code=429,
                detail=f"key {principal.name} sent too many requests: try again in {wait} s "
                "(server.key_rate_per_minute)",
                headers={"Retry-After": str(wait)},
            )
        return
    if verdict == "throttled":
        raise HTTPException(
            status_code=429,
            detail=f"too many wrong API keys from this address: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    wants_page = "text/html" in request.headers.get("accept", "")
    if request.method in ("GET", "HEAD") and wants_page:
        raise LoginNeeded(request.url.path)
    raise HTTPException(
        status_code=401,
        detail="missing or wrong API key: send Authorization: Bearer <key> "
        "(browsers: sign in at /login)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def require_role(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency (after :func:`require_key`) letting in keys holding ``role`` or more;
    403 for the others."""

    async def check(request: Request) -> Principal:
        principal = principal_of(request)
        if not principal.may(role):
            raise HTTPException(
                status_code=403,
                detail=f"key {principal.name} is a {principal.role}: this needs a {role} key",
            )
        return principal

    return check


def mcp_authorize(key: Gate | None) -> Callable[[Request], Awaitable[Response | None]] | None:
    """The key check of ``/mcp`` (mounted by ``serve``): a bearer key or a session, as
    every other route; None without keys.

    The MCP tools run outside the request's context, where a key's scopes cannot follow
    them: keys restricted to scopes are refused (403); admin keys, which read every scope,
    get in.
    """
    if key is None:
        return None
    from milvus_rag.server.status import error_body, json_error

    async def authorize(request: Request) -> Response | None:
        verdict, wait, principal = key.verify(request)
        if verdict == "ok" and principal is not None:
            if principal.scopes is None:
                return None
            message = (
                f"key {principal.name} reads only some scopes, which MCP tools cannot keep "
                "to: use /v1/chat/completions or /retrieve, or an admin key"
            )
            return json_error(error_body(message, "forbidden"), 403)
        if verdict == "throttled":
            message = f"too many wrong API keys from this address: try again in {wait} s"
            return json_error(error_body(message, "rate_limited"), 429, {"Retry-After": str(wait)})
        message = "missing or wrong API key: send Authorization: Bearer <key>"
        return json_error(error_body(message, "unauthorized"), 401, {"WWW-Authenticate": "Bearer"})

    return authorize


async def to_login(request: Request, exc: Exception) -> Response:
    """The handler of :class:`LoginNeeded`: a redirect to the login form."""
    assert isinstance(exc, LoginNeeded)
    root = request.scope.get("root_path", "")
    return RedirectResponse(f"{root}/login?next={quote(exc.path)}", status_code=303)


def _safe_next(value: str | None, default: str) -> str:
    """A local path to go to after login (never another site: ``//host``, ``/\\host``)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return default
    return value if value.isprintable() else default


_LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>milvus-rag: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 4rem auto">
<h1>milvus-rag</h1><p>{message}</p>
<form method="post" action="{action}">
<input type="hidden" name="next" value="{next}">
<label>API key <input type="password" name="key" autocomplete="current-password" autofocus
required></label> <button type="submit">Sign in</button>
</form></body></html>
"""


def _page(
    request: Request,
    next_path: str,
    message: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    root = request.scope.get("root_path", "")
    text = _LOGIN_PAGE.format(
        message=html.escape(message),
        action=html.escape(f"{root}/login"),
        next=html.escape(next_path),
    )
    return HTMLResponse(text, status_code=status, headers=headers)


def _signed_in(request: Request, next_path: str, principal: Principal | None) -> Response:
    root = request.scope.get("root_path", "")
    response = RedirectResponse(root + next_path, status_code=303)
    key = _key(request)
    if key is not None and principal is not None:
        response.set_cookie(
            COOKIE_NAME,
            key.issue(principal),
            max_age=key.ttl,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=root or "/",
        )
    return response


def _attempt(request: Request, given: str | None, next_value: str | None) -> Response:
    # After login: the answer chain's playground, or retrieval's without the LLM.
    answers = request.app.state.rag.llm is not None
    default = "/rag/playground/" if answers else "/retrieve/playground/"
    next_path = _safe_next(next_value, default)
    key = _key(request)
    if key is None:
        return _signed_in(request, next_path, None)  # nothing to sign in to
    if given is None:
        return _page(request, next_path, "Sign in with the server's API key.")
    verdict, wait, principal = key.attempt(request, given)
    if verdict == "throttled":
        message = f"Too many wrong keys from this address: try again in {wait} s."
        return _page(request, next_path, message, 429, {"Retry-After": str(wait)})
    if verdict != "ok":
        return _page(request, next_path, "That is not the server's API key.", 401)
    return _signed_in(request, next_path, principal)


#: ``/login`` (a form; ``GET /login?key=KEY`` too) opens a session (a new cookie);
#: ``/logout`` ends it on the server and clears the cookie.
router = APIRouter(include_in_schema=False)


@router.get("/login")
async def login_page(request: Request) -> Response:
    query = request.query_params
    return _attempt(request, query.get("key"), query.get("next"))


@router.post("/login")
async def login_form(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    given = form.get("key", [""])[0]
    return _attempt(request, given, form.get("next", [None])[0])


@router.get("/logout")
async def logout(request: Request) -> Response:
    root = request.scope.get("root_path", "")
    key = _key(request)
    if key is not None:  # ended here, for every worker: a copy of the cookie is no use
        key.end(request.cookies.get(COOKIE_NAME, ""))
    response = RedirectResponse(f"{root}/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path=root or "/", httponly=True, samesite="strict")
    return response
