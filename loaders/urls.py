"""URLs as sources: which strings are URLs, how a URL is shown (:func:`redact_url`: no user
info, no query values, no fragment), and the guard every request passes
(:func:`check_url_allowed`: http(s) only, hosts resolving to global addresses only)."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

import httpx

from milvus_rag.errors import DownloadError, UnsafeSourceError

__all__ = ["check_url_allowed", "is_url", "redact_url"]

_URL_WITH_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_KNOWN_SCHEME = re.compile(
    r"^(?:https?|file|ftps?|sftp|gopher|data|dict|ldaps?|smb|tftp|jar|netdoc|mailto):",
    re.IGNORECASE,
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_QUERY_KEY = re.compile(r"[A-Za-z0-9_.~%\-\[\]]{1,64}")


def is_url(source: str) -> bool:
    """Tell whether a source string is a URL rather than a local path.

    Anything shaped ``scheme://...`` is a URL, as are well-known schemes
    without slashes (``file:``, ``data:``...). Windows drive paths (``C:\\x``)
    are not URLs.

    Args:
        source: the source as given by the user.

    Returns:
        True for a URL of any scheme (safe or not).
    """
    return bool(_URL_WITH_AUTHORITY.match(source) or _KNOWN_SCHEME.match(source))


def redact_url(url: str) -> str:
    """A URL as it may be stored and shown: no user info, no query values, no fragment.

    ``http://user:pw@host/doc.md?X-Amz-Signature=abc&v=2#top`` becomes
    ``http://host/doc.md?X-Amz-Signature=&v=``: query keys that look like
    parameter names are kept, so the label still tells a signed URL from a plain
    one. Everything before the first ``/`` after ``scheme://`` and up to the last
    ``@`` is user info, even when it holds an unescaped ``#`` or ``?``. URLs that
    differ only in query values get the same label (and so the same origin).

    Args:
        url: the URL as given (any scheme, well-formed or not).

    Returns:
        The redacted URL; a URL without secrets is returned unchanged.
    """
    scheme, sep, rest = url.partition("://")
    prefix = ""
    if sep:
        slash = rest.find("/")
        authority, tail = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        prefix, rest = scheme + sep, authority.rpartition("@")[2] + tail
    rest = rest.partition("#")[0]
    base, _, query = rest.partition("?")
    keys = [
        key
        for key, eq, _value in (pair.partition("=") for pair in query.split("&"))
        if eq and _QUERY_KEY.fullmatch(key)
    ]
    return prefix + base + ("?" + "&".join(f"{key}=" for key in keys) if keys else "")


def _resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` to its IP addresses (module-level so tests can replace it)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is_public_address(address: str) -> bool:
    """Tell whether an IP address is globally routable (not internal in any way)."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return False
    return ip.is_global


def check_url_allowed(url: str, allow_private: bool = False) -> list[str]:
    """Check that a URL may be fetched and return the addresses its host resolves to.

    Args:
        url: the URL to fetch.
        allow_private: accept hosts resolving to non-global addresses.

    Returns:
        The resolved addresses, in resolver order (all global unless
        ``allow_private``).

    Raises:
        UnsafeSourceError: not ``http``/``https``, no host, or a non-global
            address while ``allow_private`` is false.
        DownloadError: the host cannot be resolved.
    """
    shown = redact_url(url)
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise UnsafeSourceError(f"{shown} is not a valid URL; check it") from exc
    if scheme not in ("http", "https"):
        raise UnsafeSourceError(
            f"{shown}: scheme {scheme + ':' if scheme else '(none)'} is not allowed; "
            "use an http:// or https:// URL"
        )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        why = f" ({exc})" if shown == url else ""  # the parser's words may quote a secret
        raise UnsafeSourceError(f"{shown} is not a valid URL{why}; check it") from exc
    host = parsed.host
    if not host:
        raise UnsafeSourceError(f"{shown} has no host; give a full http(s) URL")
    port = parsed.port or (443 if scheme == "https" else 80)
    try:
        addresses = _resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise DownloadError(
            f"cannot resolve host {host!r} of {shown} ({exc}); check the URL"
        ) from exc
    if not addresses:
        raise DownloadError(f"host {host!r} of {shown} resolves to no address; check the URL")
    if not allow_private:
        for address in addresses:
            if not _is_public_address(address):
                raise UnsafeSourceError(
                    f"{shown}: host {host!r} resolves to non-public address {address}; refused "
                    "(set allow_private_urls to fetch internal URLs)"
                )
    return addresses
