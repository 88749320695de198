"""The push stream: one WebSocket per wall or officer page. A token first, then a snapshot, deltas, pings.

Authentication (browsers cannot set headers on a WebSocket, and a token never goes in the URL):
- the client's first message is {"type": "auth", "token": "<token>"}, within `auth_timeout_s` of opening;
- a non-browser client may instead send `Authorization: Bearer <token>` with the handshake.
A missing, unknown or late token closes the socket with 4401 and a reason (the page forgets that token); a
token that could not be judged now (the address's failed-token limit, the service not answering the push
process in time, no token source) with 1013 Try Again Later and a reason (the page keeps it and reconnects
with backoff); a browser page on a foreign Origin is refused before the handshake completes (1008). The Host
and the query string are checked before (dashboard/guard.py).

What each principal receives (dashboard/policy.py): the wall, operator, command and admin every zone; an
officer or a grid leader the same messages with "zones" and "alerts" cut to the zones they cover (their
duties, their grids). The site map, the district headline and the emergency modes are kept for everyone:
they are what the page is drawn on, and an officer must know when their grid is in emergency mode. The seq
numbers are the hub's, so a filtered delta, even an empty one, keeps the page's gap check working. The cut
deltas are shared through `ScopeCache`: one cut per delta and distinct set of zones, whatever the phones, made
from the delta's structure (the hub's dict, or the push process's one decode of the delta it received).

The same code serves the main port's /ws (in the service's process, on the hub) and the push process's
(dashboard/pushserver.py, on the hub's deltas relayed over a local link): `StreamSource` is what both give,
and the token check is asynchronous because the push process asks the service (dashboard/relay.py).

Messages to the client (JSON text): {"type": "snapshot"|"delta"|"ping", "seq": n, ...}. Deltas carry
consecutive seq numbers after the snapshot's, so a page that sees a gap can ask for a fresh snapshot.
Messages from the client: {"type": "resync"} (send me a snapshot), {"type": "pong"}. Anything else is
counted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from dashboard.access import Access, Refused
from dashboard.auth import Principal
from dashboard.feed import Feed, Message
from dashboard.guard import close_reason, origin_allowed
from dashboard.policy import all_zones

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
GOING_AWAY = 1001
UNAUTHORIZED = 4401  # 4000-4999: application codes; 4401 mirrors HTTP 401
TRY_AGAIN_LATER = 1013  # RFC 6455 registry: a temporary condition; the token was not judged
AUTH_TIMEOUT_S = 10.0
PING_INTERVAL_S = 15.0  # a ping when no delta went out for this long: the page knows the stream lives
NO_AUTH_MESSAGE = 'send {"type": "auth", "token": "<your token>"} as the first message'

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

TokenCheck = Callable[[str | None, str], Awaitable[Principal | Refused]]
"""(token, client address) -> the principal, or why the token is refused (and whether for now only)."""


class StreamSource(Protocol):
    """Where a socket's messages come from: the hub, or the push process's relayed copy of its deltas."""

    def subscribe(self, resume: tuple[str, int] | None = None) -> Feed: ...
    def unsubscribe(self, feed: Feed) -> None: ...
    def ping_text(self) -> str: ...
    def reject(self, reason: str) -> None: ...


def local_check(access: Access) -> TokenCheck:
    """The service's own token check, for the in-process stream."""

    async def check(token: str | None, address: str) -> Principal | Refused:
        return access.authenticate_token(token, address)

    return check


async def serve_stream(
    websocket: WebSocket,
    source: StreamSource,
    authenticate: TokenCheck,
    *,
    allowed_origins: Collection[str] | None,
    allowed_hosts: Collection[str],
    ping_interval_s: float,
    auth_timeout_s: float = AUTH_TIMEOUT_S,
    scopes: ScopeCache | None = None,
    site_port: int | None = None,
) -> None:
    """site_port: the dashboard's port, when this is the push process's stream on another port (its pages
    pass the Origin check there as on the main port; dashboard.guard.origin_allowed)."""
    if not origin_allowed(websocket.headers, allowed_origins, allowed_hosts, site_port=site_port):
        source.reject("websocket from a foreign origin")
        # Close before accepting: the cross-site page never gets a stream.
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    await websocket.accept()  # accepted first, so a browser is told why in the close frame
    who = await _authenticate(websocket, authenticate, auth_timeout_s)
    if isinstance(who, Refused):
        source.reject("websocket token not checked now" if who.temporary else "websocket without a valid token")
        code = TRY_AGAIN_LATER if who.temporary else UNAUTHORIZED
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code, reason=close_reason(who.reason))
        return
    zones = who.zones or frozenset()
    cache = scopes if scopes is not None else ScopeCache()
    scope = None if all_zones(who) else (lambda message: cache.scoped(zones, message))
    feed = source.subscribe(_resume_point(websocket))
    sender = asyncio.create_task(_send(websocket, feed, source, ping_interval_s, scope))
    receiver = asyncio.create_task(_receive(websocket, feed, source))
    try:
        done, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            exc = task.exception()
            if exc is not None and not isinstance(exc, WebSocketDisconnect):
                log.warning("websocket client ended with %s", type(exc).__name__)
    finally:
        source.unsubscribe(feed)
        sender.cancel()
        receiver.cancel()


async def _authenticate(websocket: WebSocket, authenticate: TokenCheck, timeout_s: float) -> Principal | Refused:
    """The principal from the handshake's Authorization header or the first message; else why not."""
    address = websocket.client.host if websocket.client else "unknown"
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return Refused("Authorization must be 'Bearer <token>'")
        return await authenticate(token, address)
    try:
        async with asyncio.timeout(timeout_s):
            message = await websocket.receive()
    except TimeoutError:
        return Refused(f"no token within {timeout_s:g} s: {NO_AUTH_MESSAGE}")
    if message["type"] == "websocket.disconnect":
        return Refused("disconnected before sending a token")
    text = message.get("text")
    try:
        body = _decoder.decode(text) if isinstance(text, str) else None
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict) or body.get("type") != "auth":
        return Refused(f"no token: {NO_AUTH_MESSAGE}")
    given = body.get("token")
    return await authenticate(given if isinstance(given, str) else None, address)


def cut(zones: frozenset[str], body: dict[str, Any]) -> str:
    """A snapshot or delta with only `zones`' states and alerts, encoded."""
    out = dict(body)  # shallow: the zone and alert views are shared, not copied
    out["zones"] = [z for z in body.get("zones") or () if isinstance(z, dict) and z.get("id") in zones]
    out["alerts"] = [a for a in body.get("alerts") or () if isinstance(a, dict) and a.get("zone") in zones]
    return _encoder.encode(out).decode()


class ScopeCache:
    """Cut messages, shared by every socket of the process: every feed gets the same Message object for a
    delta, so officers with the same zones (the same duty, one grid's leaders) cost one cut per delta, not one
    per phone; and each cut filters the message's structure (no decode and re-encode per scope).

    The newest `size` delta cuts are kept, and a few snapshot cuts (the push process shares one snapshot
    between the clients that connect at the same seq; the hub makes one per client). Single event loop.
    """

    def __init__(self, size: int = 256, snapshots: int = 8) -> None:
        self.size = size
        self.snapshots = snapshots
        self._cut: OrderedDict[tuple[frozenset[str], Message], str] = OrderedDict()
        self._snap: OrderedDict[tuple[frozenset[str], Message], str] = OrderedDict()
        self.cuts = 0  # messages cut and encoded
        self.hits = 0  # served from the cache

    def scoped(self, zones: frozenset[str], message: Message) -> str:
        kept = self._snap if message.kind == "snapshot" else self._cut
        key = (zones, message)
        found = kept.get(key)
        if found is not None:
            self.hits += 1
            kept.move_to_end(key)
            return found
        self.cuts += 1
        body = message.body()
        out = kept[key] = message.text if body is None else cut(zones, body)
        while len(kept) > (self.snapshots if kept is self._snap else self.size):
            kept.popitem(last=False)
        return out


def _resume_point(websocket: WebSocket) -> tuple[str, int] | None:
    """`/ws?epoch=<epoch>&seq=<last seq seen>` from a reconnecting page; anything unreadable: a snapshot."""
    epoch, seq = websocket.query_params.get("epoch"), websocket.query_params.get("seq")
    if not epoch or seq is None or not seq.isdigit() or len(seq) > 18:
        return None
    return epoch, int(seq)


async def _send(
    websocket: WebSocket,
    feed: Feed,
    source: StreamSource,
    ping_interval_s: float,
    scope: Callable[[Message], str] | None,
) -> None:
    while True:
        message = await feed.next_message(ping_interval_s)
        if feed.closed:  # the app is shutting down
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=GOING_AWAY, reason="server shutting down")
            return
        if message is None:
            await websocket.send_text(source.ping_text())  # pings carry no zones: the same for everyone
            continue
        await websocket.send_text(message.text if scope is None else scope(message))


async def _receive(websocket: WebSocket, feed: Feed, source: StreamSource) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        try:
            body = _decoder.decode(text) if isinstance(text, str) else None
        except msgspec.DecodeError:
            body = None
        if isinstance(body, dict) and body.get("type") == "resync":
            feed.request_snapshot()
        elif isinstance(body, dict) and body.get("type") in ("pong", "auth"):
            continue  # a page resending its token after a reconnect race is harmless
        else:
            source.reject("unreadable message from a websocket client")
