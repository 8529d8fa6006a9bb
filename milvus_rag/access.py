"""The Milvus user milvus-rag connects as: its own, with only the privileges it needs.

On a Milvus server with authentication on (``common.security.authorizationEnabled``),
``root`` may do anything: create users, drop any database. milvus-rag needs much less,
so it connects as a user of its own, made once through Milvus RBAC by an administrator:
:func:`create_user` signs in with the administrator's token (``root:PASSWORD``) and makes
sure that the user named by ``milvus.token`` (``USER:PASSWORD``) exists, holding a role
of the same name granted :data:`PRIVILEGES` on the collections of its database, and
nothing else; then it signs in as that user to check the token works. It can run at
every start: what exists is kept (it never changes a password or drops a grant).

``milvus-rag create-user`` runs it (compose.yaml's ``milvus-init`` service does, at first
start). The privileges are Milvus's classic (v1) ones, which Milvus 2.3 to 2.6 accept.

Example:
    .. code-block:: python

        from pydantic import SecretStr
        from milvus_rag import load_settings
        from milvus_rag.access import create_user

        settings = load_settings()  # MILVUS_RAG_MILVUS__TOKEN=milvus_rag:app-password
        report = create_user(settings.milvus, SecretStr("root:admin-password"))
        print(report.user, report.created)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from milvus_rag.errors import ConfigError, StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from milvus_rag.settings import MilvusSettings

__all__ = ["PRIVILEGES", "UserReport", "create_user"]

#: ``(object type, privilege)`` pairs granted on ``*`` (every collection of the database):
#: what ``ingest`` (also ``--recreate`` and ``--prune``, and its lock), ``search``, ``ask``,
#: ``chat``, ``serve``, ``sources``, ``delete``, ``doctor``, ``eval`` and ``migrate`` do.
#: Not granted: users, roles, databases, aliases, resource groups, renames, imports.
PRIVILEGES: tuple[tuple[str, str], ...] = (
    ("Global", "CreateCollection"),
    ("Global", "DropCollection"),
    ("Global", "DescribeCollection"),
    ("Global", "ShowCollections"),
    ("Collection", "CreateIndex"),
    ("Collection", "IndexDetail"),
    ("Collection", "Load"),
    ("Collection", "GetLoadingProgress"),
    ("Collection", "GetLoadState"),
    ("Collection", "Insert"),
    ("Collection", "Upsert"),
    ("Collection", "Delete"),
    ("Collection", "Search"),
    ("Collection", "Query"),
    ("Collection", "Flush"),
    ("Collection", "GetFlushState"),
    ("Collection", "GetStatistics"),
)

#: Milvus's rule for user and role names.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")


@dataclass(frozen=True)
class UserReport:
    """What :func:`create_user` found and did."""

    user: str
    role: str
    created: bool  # False: the user existed already (its password was left as it was)
    privileges: int  # privileges the role holds on the database's collections


def _credentials(token: SecretStr | None, what: str, setting: str) -> tuple[str, str]:
    value = token.get_secret_value() if token is not None else ""
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{what} must be USER:PASSWORD ({setting})")
    if not _NAME.fullmatch(user):
        raise ConfigError(
            f"{what} names an invalid Milvus user: a letter, then up to 31 letters, digits "
            f"or _ ({setting})"
        )
    return user, password


def _reason(exc: BaseException) -> str:
    """One line for a pymilvus or gRPC error (gRPC keeps its reason in ``details()``)."""
    details = getattr(exc, "details", None)
    text = details() if callable(details) else getattr(exc, "message", None) or str(exc)
    lines = str(text or type(exc).__name__).strip().splitlines() or [type(exc).__name__]
    return lines[0][:200]


def create_user(
    milvus: MilvusSettings, admin_token: SecretStr, *, db_name: str = "default"
) -> UserReport:
    """Make sure ``milvus.token``'s user exists with :data:`PRIVILEGES`, and can sign in.

    Args:
        milvus: the ``milvus`` settings: the server (``uri``) and the user to create
            (``token``, ``USER:PASSWORD``).
        admin_token: a token of a user allowed to manage users and roles (``root:...``).
        db_name: the database whose collections the role is granted.

    Raises:
        ConfigError: a token is not ``USER:PASSWORD``, the user is the administrator
            itself, or ``milvus.uri`` is a Milvus Lite file (it has no users).
        StoreUnavailableError: Milvus cannot be reached, or refuses the admin token.
        StoreError: Milvus refused an operation, or the user cannot sign in with its
            token (it existed already, with another password).
    """
    from milvus_rag.store import connect, grant_user

    if milvus.is_lite:
        raise ConfigError(
            f"milvus.uri {milvus.uri} is a Milvus Lite file: it has no users; give a Milvus "
            "server's http:// address"
        )
    user, password = _credentials(milvus.token, "the user to create", "MILVUS_RAG_MILVUS__TOKEN")
    admin = admin_token.get_secret_value().partition(":")[0]
    if not admin_token.get_secret_value().strip():
        raise ConfigError("the administrator's token is empty (MILVUS_ADMIN_TOKEN)")
    if user == admin:
        raise ConfigError(
            f"MILVUS_RAG_MILVUS__TOKEN names the administrator ({admin}): set it to the "
            "user milvus-rag should connect as, e.g. milvus_rag:PASSWORD"
        )
    try:
        client = connect(milvus.model_copy(update={"token": admin_token}))
    except StoreUnavailableError as exc:
        raise StoreUnavailableError(
            f"Milvus at {milvus.uri} cannot be reached with the administrator's token "
            f"(MILVUS_ADMIN_TOKEN): {_reason(exc.__cause__ or exc)}"
        ) from exc
    try:
        created, granted = grant_user(client, user, password, PRIVILEGES, db_name)
    except StoreError as exc:
        raise StoreError(f"Milvus at {milvus.uri} {exc}") from exc
    finally:
        client.close()
    _check_sign_in(milvus, user, created)
    held = {(p.get("object_type"), p.get("privilege")) for p in granted}
    return UserReport(user, user, created, len(held & set(PRIVILEGES)))


def _check_sign_in(milvus: MilvusSettings, user: str, created: bool) -> None:
    from milvus_rag.store import connect, list_collections

    try:
        client = connect(milvus)
    except StoreUnavailableError as exc:
        hint = (
            ""
            if created
            else f": user {user} existed already, with another password; change it with "
            "MilvusClient.update_password, or set its token in MILVUS_RAG_MILVUS__TOKEN"
        )
        raise StoreError(f"user {user} cannot sign in with MILVUS_RAG_MILVUS__TOKEN{hint}") from exc
    try:
        list_collections(client)
    except Exception as exc:
        raise StoreError(f"user {user} cannot list collections: {_reason(exc)}") from exc
    finally:
        client.close()
