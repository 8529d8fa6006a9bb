"""The ingest lock: one ingest per collection at a time on a server, with a lease its
holder renews, taken over once abandoned (:class:`IngestLock`); its status and release
by hand (``milvus-rag doctor``, ``milvus-rag unlock``)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from milvus_rag.errors import IngestLockedError, StoreError
from milvus_rag.store.connection import reason
from milvus_rag.store.meta import meta_delete, meta_rows, meta_write, record_key

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rag.settings import Settings

__all__ = [
    "LOCK_LEASE_SECONDS",
    "LOCK_OWNERLESS_SECONDS",
    "IngestLock",
    "LockStatus",
    "ingest_lock_status",
    "release_ingest_lock",
]

_log = logging.getLogger(__name__)


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
        meta_write(
            self.client, self.collection, {record_key(self.collection, "lock"): ("lock", lease)}
        )

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
    lease = meta_rows(client, collection, "lock").get(record_key(collection, "lock"), {})
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
    meta_delete(client, [record_key(collection, "lock")])


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
