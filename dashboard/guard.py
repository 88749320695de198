"""Request guards: the WebSocket Origin check (CORS middleware skips WebSockets) and bearer tokens."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit


def normalise_origin(origin: str) -> str:
    """'HTTP://Wall.local:80/' -> 'http://wall.local' (scheme://host[:port], default ports dropped)."""
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return ""  # a malformed port never matches
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(headers: Mapping[str, str], allowed: list[str] | None) -> bool:
    """True if a WebSocket handshake may proceed.

    Browsers always send Origin on a WebSocket handshake, so a missing Origin is a non-browser client
    (a CLI, a test, the service itself) and cannot be a cross-site page: allowed. With `allowed` None,
    the Origin must name the host the request was sent to (same host); otherwise it must be in `allowed`.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    got = normalise_origin(origin)
    if not got or got.endswith("://"):
        return False
    if allowed is None:
        host = headers.get("host", "").lower()
        return bool(host) and urlsplit(got).netloc == _strip_default_port(host, urlsplit(got).scheme)
    return got in {normalise_origin(a) for a in allowed}


def _strip_default_port(host: str, scheme: str) -> str:
    default = {"http": ":80", "https": ":443"}.get(scheme)
    return host[: -len(default)] if default and host.endswith(default) else host


def bearer_ok(authorization: str | None, token: str | None) -> bool:
    """True if no token is configured, or the Authorization header carries it (constant-time compare)."""
    if token is None:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
