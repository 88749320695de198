"""Request guards in front of every route: trusted hosts, no tokens in URLs, and the WebSocket Origin check.

- Host: a request must name one of the deployment's host names (`allowed_hosts`; default: this machine's
  loopback names only). A DNS-rebinding page makes the browser send its own host name (evil.example) to our
  address: refused with 400 before any route runs.
- Tokens in the query string (?token=, ?access_token=, ...): refused with 400 saying to use the
  Authorization header. URLs end up in access logs, browser history and proxies (DESIGN.md §5).
- Origin (WebSocket only: CORS middleware does not cover WebSockets): a browser's handshake must come from
  one of `allowed_origins`; with none configured, from a page served by one of the allowed hosts. Never
  compared with the Host header: a rebinding page controls both.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Collection, Mapping
from urllib.parse import parse_qsl, urlsplit

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
TOKEN_PARAMS = frozenset(
    {"token", "access_token", "api_token", "id_token", "auth", "authorization", "bearer", "api_key", "apikey",
     "key", "password", "secret", "jwt"}
)  # fmt: skip
POLICY_VIOLATION = 1008
TOKEN_IN_URL = (
    "a token in the URL is refused: URLs end up in logs. Send 'Authorization: Bearer <token>' instead "
    '(the push stream: the first message {{"type": "auth", "token": ...}}); query parameter {name!r}'
)


MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 §5.5: a control frame's payload is 125 bytes, 2 of them the code


def close_reason(reason: str) -> str:
    """`reason` cut to fit a close frame: at most 123 bytes of UTF-8, never half a character (a lone
    surrogate, which UTF-8 cannot carry, becomes '?')."""
    data = reason.encode("utf-8", errors="replace")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return data.decode("utf-8")
    # A cut inside a multi-byte character leaves an incomplete tail, which "ignore" drops (and only it).
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


def normalise_origin(origin: str) -> str:
    """'HTTP://Wall.local:80/' -> 'http://wall.local' (scheme://host[:port], default ports dropped)."""
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return ""  # a malformed port never matches
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def host_name(host_header: str) -> str:
    """'Wall.Local:8000' -> 'wall.local'; '[::1]:8000' -> '::1'; '' for a malformed header."""
    h = host_header.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end > 0 else ""
    name, _, port = h.partition(":")
    if port and not port.isdigit():
        return ""
    return name.rstrip(".")


def host_allowed(host_header: str, allowed_hosts: Collection[str]) -> bool:
    """True if the Host header names an allowed host ("*.example.cn" allows its subdomains; "*" anything)."""
    name = host_name(host_header)
    if not name:
        return False
    for pattern in allowed_hosts:
        p = pattern.strip().lower().strip("[]")
        if p == "*" or p == name or (p.startswith("*.") and name.endswith(p[1:])):
            return True
    return False


def origin_allowed(
    headers: Mapping[str, str],
    allowed_origins: Collection[str] | None,
    allowed_hosts: Collection[str],
    *,
    site_port: int | None = None,
) -> bool:
    """True if a WebSocket handshake may proceed.

    Browsers always send Origin on a WebSocket handshake, so a missing Origin is a non-browser client (a CLI,
    a test, the service itself) and cannot be a cross-site page: allowed (it still needs a token). With
    `allowed_origins` given, the Origin must be one of them; otherwise an http(s) page on an allowed host.
    site_port (the push process: dashboard/pushserver.py): the dashboard's own port; with `allowed_origins`
    given, the dashboard's own pages pass too, as they do on the main port: an Origin on that port whose host
    is the request's own Host name, listed in `allowed_hosts` by name (a wildcard, "*" or "*.example.cn",
    would let any site in; a rebinding page controls both headers, so the name must be one we were given).
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    got = normalise_origin(origin)
    if not got or got.endswith("://"):
        return False
    parts = urlsplit(got)
    on_allowed_host = parts.scheme in ("http", "https") and host_allowed(parts.netloc, allowed_hosts)
    if allowed_origins is None:
        return on_allowed_host
    if got in {normalise_origin(a) for a in allowed_origins}:
        return True
    if site_port is None or not on_allowed_host:
        return False
    name = (parts.hostname or "").rstrip(".")
    named = {h.strip().lower().strip("[]").rstrip(".") for h in allowed_hosts}
    if name not in named or name != host_name(headers.get("host") or ""):
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return port == site_port


def token_in_query(query_string: bytes | str) -> str | None:
    """The name of a query parameter that looks like a credential, or None."""
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    for name, _ in parse_qsl(text, keep_blank_values=True):
        if name.strip().lower() in TOKEN_PARAMS:
            return name
    return None


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


class RequestGuard:
    """ASGI middleware: Host allow-list and no credentials in the query string, for HTTP and WebSocket."""

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Collection[str] = LOOPBACK_HOSTS, refused: Counter[str] | None = None
    ) -> None:
        if not allowed_hosts:
            raise ValueError("allowed_hosts is empty: no request could reach the app; list the host names")
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.refused: Counter[str] = Counter() if refused is None else refused  # shown in /healthz

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1")
                break
        if not host_allowed(host, self.allowed_hosts):
            self.refused["unknown host"] += 1
            shown = host_name(host) or "(none)"
            await _refuse(scope, send, f"host {shown!r} is not served here: open the dashboard by one of its "
                          "configured names ([dashboard] allowed_hosts)")  # fmt: skip
            return
        param = token_in_query(scope.get("query_string", b""))
        if param is not None:
            self.refused["token in the URL"] += 1
            await _refuse(scope, send, TOKEN_IN_URL.format(name=param))
            return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, detail: str) -> None:
    body = msgspec.json.encode({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "websocket":
        if "websocket.http.response" not in scope.get("extensions", {}):
            # A server without the denial-response extension answers a close before accept with 403.
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": close_reason(detail)})
            return
        # The handshake is answered with the same 400 and JSON reason as a plain request (uvicorn, TestClient).
        await send({"type": "websocket.http.response.start", "status": 400, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
