"""API keys with a name, a role and a scope: who may see and change what through the server.

- A key belongs to a :class:`Principal`: a ``name`` (what logs and metrics show, never the
  key), a ``role`` (``reader``: retrieval and answers; ``writer``: also uploads and deletes
  within its scope; ``admin``: everything, every scope) and its ``scopes`` (the document
  scopes it reads and writes; every scope for an admin).
- :class:`KeysFile` keeps principals in a YAML file (``server.keys_file``) with the key's
  SHA-256 digest, never the key itself: ``milvus-rag keys add`` makes a key (printed once),
  ``keys list`` shows them, ``keys revoke`` removes one. Writes are atomic (a reader never
  sees half a file) and the file is private (mode 0600).
- :class:`KeyRing` answers "whose key is this?" for the server: the keys file (re-read
  when it changes, so a revoked key is refused on its next request), keys given in the
  settings (``server.keys``, e.g. from the environment, digests too) and the single
  ``server.api_key`` (an admin named ``admin``). Digests are compared in constant time.
- :class:`RateLimiter`: a token bucket per key name (``server.key_rate_per_minute``, or the
  key's own ``rate_per_minute``).

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "keys.yaml"
    >>> key = KeysFile(path).add("alice", "reader", ["finance"])
    >>> ring = KeyRing(path)
    >>> ring.lookup(key).name, ring.lookup(key).scopes
    ('alice', ('finance',))
    >>> KeysFile(path).revoke("alice")
    True
    >>> ring.lookup(key) is None
    True
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from milvus_rag.errors import ConfigError

__all__ = [
    "ADMIN_NAME",
    "ROLES",
    "KeyRing",
    "KeysFile",
    "Principal",
    "RateLimiter",
    "Role",
    "digest_of",
    "new_key",
]

_log = logging.getLogger(__name__)

Role = Literal["reader", "writer", "admin"]
#: The roles, least to most allowed.
ROLES: tuple[Role, ...] = ("reader", "writer", "admin")
#: The name ``server.api_key`` is known by.
ADMIN_NAME = "admin"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def digest_of(key: str) -> str:
    """The stored form of a key: ``sha256:HEX`` of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A new random key (256 bits)."""
    return "mrag-" + secrets.token_urlsafe(32)


def check_name(name: Any, what: str = "key name") -> str:
    """``name`` if it is a valid key or scope name (letters, digits, ``_``, ``-``; at most
    64 characters, starting with a letter or digit)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not valid: use letters, digits, '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class Principal:
    """Who a request is: a key's name, role and scopes (``None``: every scope)."""

    name: str
    role: Role
    scopes: tuple[str, ...] | None
    digest: str = field(default="", repr=False)
    rate_per_minute: int | None = None

    def may(self, role: Role) -> bool:
        """Whether this principal holds ``role`` or a larger one."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def reads(self, scope: str) -> bool:
        """Whether documents of ``scope`` are visible to this principal."""
        return self.scopes is None or scope in self.scopes

    @classmethod
    def from_record(cls, record: Any, where: str) -> Principal:
        """A principal from a keys-file (or ``server.keys``) entry.

        Raises:
            ConfigError: the entry is not a valid key record.
        """
        if not isinstance(record, dict):
            raise ConfigError(f"{where}: each key is a mapping with name, role, scopes, hash")
        name = check_name(record.get("name"), f"{where}: key name")
        role = record.get("role")
        if role not in ROLES:
            raise ConfigError(f"{where}: key {name}: role must be one of {', '.join(ROLES)}")
        digest = record.get("hash")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ConfigError(f"{where}: key {name}: hash must be sha256:<64 hex digits>")
        scopes = record.get("scopes") or []
        if not isinstance(scopes, list):
            raise ConfigError(f"{where}: key {name}: scopes must be a list of names")
        for scope in scopes:
            check_name(scope, f"{where}: key {name}: scope")
        if role != "admin" and not scopes:
            raise ConfigError(f"{where}: key {name}: a {role} key needs at least one scope")
        rate = record.get("rate_per_minute")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            raise ConfigError(f"{where}: key {name}: rate_per_minute must be a whole number >= 1")
        return cls(
            name=name,
            role=cast(Role, role),
            scopes=None if role == "admin" and not scopes else tuple(scopes),
            digest=digest,
            rate_per_minute=rate,
        )

    def record(self) -> dict[str, Any]:
        """The keys-file entry of this principal."""
        out: dict[str, Any] = {
            "name": self.name,
            "role": self.role,
            "scopes": list(self.scopes or []),
            "hash": self.digest,
        }
        if self.rate_per_minute is not None:
            out["rate_per_minute"] = self.rate_per_minute
        return out


class KeysFile:
    """The keys file (YAML): ``keys: [{name, role, scopes, hash, rate_per_minute?}]``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> list[Principal]:
        """The principals in the file (none when it does not exist).

        Raises:
            ConfigError: the file cannot be read or is not a keys file.
        """
        import yaml

        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the keys file {self.path}: {exc}") from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"the keys file {self.path} is not valid YAML") from exc
        records = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise ConfigError(f"the keys file {self.path} must hold `keys:` with a list")
        principals = [Principal.from_record(r, str(self.path)) for r in records]
        names = [p.name for p in principals]
        if len(set(names)) != len(names):
            raise ConfigError(f"the keys file {self.path} names a key twice")
        return principals

    def _write(self, principals: Iterable[Principal]) -> None:
        import yaml

        text = yaml.safe_dump({"keys": [p.record() for p in principals]}, sort_keys=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add(
        self,
        name: str,
        role: str,
        scopes: Sequence[str],
        rate_per_minute: int | None = None,
    ) -> str:
        """Make a key for a new principal and store its digest; returns the key (the only
        time it is seen).

        Raises:
            ConfigError: the name is taken or invalid, the role or a scope is invalid.
        """
        key = new_key()
        record: dict[str, Any] = {
            "name": name,
            "role": role,
            "scopes": list(scopes),
            "hash": digest_of(key),
        }
        if rate_per_minute is not None:
            record["rate_per_minute"] = rate_per_minute
        principal = Principal.from_record(record, "keys add")
        principals = self.load()
        if any(p.name == name for p in principals):
            raise ConfigError(f"a key named {name} exists in {self.path}: revoke it first")
        self._write([*principals, principal])
        return key

    def revoke(self, name: str) -> bool:
        """Remove the key named ``name``; False when there is none."""
        principals = self.load()
        kept = [p for p in principals if p.name != name]
        if len(kept) == len(principals):
            return False
        self._write(kept)
        return True


class KeyRing:
    """Every key the server accepts: the keys file (re-read when it changes), the keys in
    the settings and the single admin key."""

    def __init__(
        self,
        path: str | Path | None = None,
        fixed: Sequence[Principal] = (),
    ) -> None:
        self.file = KeysFile(path) if path is not None else None
        self.fixed = list(fixed)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._loaded: list[Principal] = []

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.file is not None
        try:
            found = self.file.path.stat()
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    def principals(self) -> list[Principal]:
        """Every principal, the keys file as it is now."""
        if self.file is None:
            return self.fixed
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                try:
                    self._loaded = self.file.load() if stamp is not None else []
                except ConfigError as exc:  # fail closed: none of the file's keys open anything
                    _log.warning("%s; its keys are refused until it is fixed", exc)
                    self._loaded = []
                self._stamp = stamp
            return [*self.fixed, *self._loaded]

    def lookup(self, key: str) -> Principal | None:
        """The principal whose key ``key`` is; None for an unknown key."""
        digest = digest_of(key).encode()
        found = None
        for principal in self.principals():  # every digest compared: no early exit
            if hmac.compare_digest(digest, principal.digest.encode()) and found is None:
                found = principal
        return found

    def named(self, name: str) -> Principal | None:
        """The principal named ``name`` (still holding a key); None otherwise."""
        return next((p for p in self.principals() if p.name == name), None)


class RateLimiter:
    """Requests per key name: a token bucket each, ``per_minute`` at once, refilling at
    ``per_minute`` a minute (a key's own ``rate_per_minute`` wins); 0 means unlimited.

    Example:
        >>> now = [0.0]
        >>> limiter = RateLimiter(2, clock=lambda: now[0])
        >>> bob = Principal("bob", "reader", ("a",))
        >>> [limiter.wait(bob) for _ in range(3)]
        [0, 0, 30]
        >>> now[0] += 30
        >>> limiter.wait(bob)
        0
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def wait(self, principal: Principal) -> int:
        """Take one request from ``principal``'s bucket: 0 when allowed, else the whole
        seconds until the next one is."""
        rate = principal.rate_per_minute or self.per_minute
        if not rate:
            return 0
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(principal.name, (float(rate), now))
            tokens = min(float(rate), tokens + (now - at) * rate / 60.0)
            if tokens >= 1.0:
                self._buckets[principal.name] = (tokens - 1.0, now)
                return 0
            self._buckets[principal.name] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) * 60.0 / rate))
