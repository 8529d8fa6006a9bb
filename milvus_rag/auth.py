"""Who gets into the HTTP server: browser login sessions and the failed-key limit.

- :class:`SessionStore` and :class:`Sessions`: a browser that signs in at ``/login``
  gets a session cookie: a random session id and its expiry time, signed with a
  secret of the server (HMAC-SHA256). It is valid until it expires
  (``server.session_ttl``) or is revoked by ``/logout``, on the server: the session id
  joins the store's revoked ones, so the cookie no longer opens anything even if it was
  copied. A new login gets a new cookie. The cookie holds neither the key nor a digest of it.
- :class:`AuthLimiter`: wrong API keys (a bearer header, the login form) are counted per
  client address; past ``server.max_auth_failures`` a minute the client gets 429 with
  ``Retry-After`` and its keys are not even checked until then.

Several workers (``milvus-rag serve --workers N``) share one :meth:`SessionStore.shared`
store: the same secret (handed to each worker when it starts, never through the
environment or a command line) and a private folder where revoked session ids are
written, so a session opened on one worker is valid on every worker and a logout on
one ends it on all. The secret is made anew each time the server starts: a restart
signs every browser out, and revocations never need to outlive the server. The
failed-key limit is counted per process (N workers allow up to N times as many
failures: the kernel spreads a client's connections over them).

Example:
    >>> clock = [1000.0]
    >>> sessions = Sessions(SessionStore(), key="k3y", ttl=60, clock=lambda: clock[0])
    >>> cookie = sessions.issue()
    >>> sessions.valid(cookie)
    True
    >>> clock[0] += 60
    >>> sessions.valid(cookie)  # expired
    False
    >>> cookie = sessions.issue()
    >>> sessions.revoke(cookie)
    >>> sessions.valid(cookie)  # logged out
    False
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["AuthLimiter", "SessionStore", "Sessions"]

_SID = re.compile(r"[0-9a-f]{32}")
#: At most this many clients' failure counts are kept (the least recently failing go first).
_MAX_CLIENTS = 100_000


class SessionStore:
    """The server-wide part of login sessions: the signing secret and the revoked sessions.

    Without ``folder`` the revoked sessions are kept in memory (one process);
    :meth:`shared` makes a store whose revocations live in a private temporary folder,
    for several processes serving the same port (pickle it to them).

    Example:
        >>> store = SessionStore.shared()
        >>> store.folder.is_dir()
        True
        >>> store.close()
        >>> store.folder.exists()
        False
    """

    def __init__(self, secret: bytes | None = None, folder: str | Path | None = None) -> None:
        self.secret = secret if secret is not None else secrets.token_bytes(32)
        self.folder = Path(folder) if folder is not None else None
        self._revoked: dict[str, float] = {}  # session id -> its expiry (no folder)

    @classmethod
    def shared(cls) -> SessionStore:
        """A store with a new secret and a new private folder (mode 0700) for revocations."""
        return cls(folder=tempfile.mkdtemp(prefix="milvus-rag-sessions-"))

    def close(self) -> None:
        """Remove the revocations folder (the sessions it signed end with it)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def revoke(self, sid: str, expires: float, now: float) -> None:
        """Mark session ``sid`` (valid until ``expires``) revoked; forget expired ones."""
        if self.folder is None:
            self._revoked = {s: e for s, e in self._revoked.items() if e > now}
            self._revoked[sid] = expires
            return
        for entry in self.folder.iterdir():
            try:
                if float(entry.read_text()) <= now:
                    entry.unlink()
            except (OSError, ValueError):
                continue  # another worker removed it, or is writing it
        # Its existence is the revocation; its content (the expiry) only says when to forget it.
        (self.folder / sid).write_text(repr(expires))

    def is_revoked(self, sid: str) -> bool:
        """Whether session ``sid`` was revoked (by any process sharing the store)."""
        if self.folder is None:
            return sid in self._revoked
        return (self.folder / sid).exists()


class Sessions:
    """Login sessions for one API key: issue a cookie, check it, revoke it.

    A token is ``SID.EXPIRES.MAC``: 128 random bits, the expiry (Unix seconds) and an
    HMAC-SHA256 of both under a key derived from the store's secret and the API key
    (another key, or another server run, makes every token invalid).
    """

    def __init__(
        self,
        store: SessionStore,
        key: str,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._mac_key = hmac.new(
            store.secret, b"milvus-rag session\0" + hashlib.sha256(key.encode()).digest(), "sha256"
        ).digest()

    def _mac(self, sid: str, expires: int) -> str:
        return hmac.new(self._mac_key, f"{sid}.{expires}".encode(), "sha256").hexdigest()

    def issue(self) -> str:
        """A new session's token, valid for ``ttl`` seconds."""
        sid = secrets.token_hex(16)
        expires = math.ceil(self.clock() + self.ttl)
        return f"{sid}.{expires}.{self._mac(sid, expires)}"

    def _parse(self, token: str) -> tuple[str, int] | None:
        """(session id, expiry) of a token this server signed; None for anything else."""
        sid, _, rest = token.partition(".")
        expires, _, mac = rest.partition(".")
        if not (_SID.fullmatch(sid) and expires.isascii() and expires.isdigit()):
            return None
        if len(expires) > 12 or not hmac.compare_digest(
            mac.encode("utf-8", "replace"), self._mac(sid, int(expires)).encode()
        ):
            return None
        return sid, int(expires)

    def valid(self, token: str) -> bool:
        """Whether ``token`` is a session this server signed, not expired, not revoked."""
        parsed = self._parse(token)
        if parsed is None:
            return False
        sid, expires = parsed
        return self.clock() < expires and not self.store.is_revoked(sid)

    def revoke(self, token: str) -> None:
        """End the session of ``token`` on every process sharing the store (a no-op for
        a token that is not a valid session)."""
        parsed = self._parse(token)
        if parsed is not None:
            self.store.revoke(parsed[0], parsed[1], self.clock())


class AuthLimiter:
    """Failed authentications per client address: a token bucket per client.

    A client may fail ``per_minute`` times at once; its allowance refills at
    ``per_minute`` a minute. Once spent, :meth:`wait` gives the seconds until the client
    may try again. Only failures count: a client that sends the right key is never slowed.

    Example:
        >>> now = [0.0]
        >>> limiter = AuthLimiter(2, clock=lambda: now[0])
        >>> limiter.failed("10.0.0.1"), limiter.failed("10.0.0.1")
        (1, 0)
        >>> limiter.wait("10.0.0.1"), limiter.wait("10.0.0.2")
        (30, 0)
        >>> now[0] += 30
        >>> limiter.wait("10.0.0.1")
        0
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # allowance regained per second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (allowance, when)
        self._lock = threading.Lock()

    def _allowance(self, client: str, now: float) -> float:
        allowance, when = self._buckets.get(client, (self.capacity, now))
        return min(self.capacity, allowance + max(0.0, now - when) * self.rate)

    def wait(self, client: str) -> int:
        """Whole seconds before ``client`` may try a key again (0: now)."""
        with self._lock:
            allowance = self._allowance(client, self.clock())
        if allowance >= 1:
            return 0
        return max(1, math.ceil((1 - allowance) / self.rate))

    def failed(self, client: str) -> int:
        """Count a failure of ``client``; returns how many more it may make right now."""
        with self._lock:
            now = self.clock()
            allowance = max(0.0, self._allowance(client, now) - 1)
            self._buckets.pop(client, None)  # most recent last
            self._buckets[client] = (allowance, now)
            while len(self._buckets) > _MAX_CLIENTS:
                del self._buckets[next(iter(self._buckets))]
        return int(allowance)
