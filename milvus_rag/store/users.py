"""Milvus users and roles (RBAC): the least-privilege user milvus-rag connects as."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import StoreError
from milvus_rag.store.connection import reason

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["grant_user"]


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
