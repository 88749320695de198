"""The push stream: one WebSocket per wall or officer page. A token first, then a snapshot, deltas, pings.

Authentication (browsers cannot set headers on a WebSocket, and a token never goes in the URL):
- the client's first message is {"type": "auth", "token": "<token>"}, within `auth_timeout_s` of opening;
- a non-browser client may instead send `Authorization: Bearer <token>` with the handshake.
A missing, unknown or late token closes the socket with 4401 and a reason; a browser page on a foreign
Origin is refused before the handshake completes (1008). The Host and the query string are checked before
(dashboard/guard.py).

What each principal receives (dashboard/policy.py): the wall, operator, command and admin every zone; an
officer or a grid leader the same messages with "zones" and "alerts" cut to the zones they cover (their
duties, their grids). The site map, the district headline and the emergency modes are kept for everyone:
they are what the page is drawn on, and an officer must know when their grid is in emergency mode. The seq
numbers are the hub's, so a filtered delta, even an empty one, keeps the page's gap check working. The cut
deltas are shared through `ScopeCache`: one cut per delta and distinct set of zones, whatever the phones.

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
from collections.abc import Callable, Collection
from typing import Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from dashboard.access import Access
from dashboard.auth import Principal
from dashboard.feed import Feed
from dashboard.guard import origin_allowed
from dashboard.hub import Hub
from dashboard.policy import all_zones

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
GOING_AWAY = 1001
UNAUTHORIZED = 4401  # 4000-4999: application codes; 4401 mirrors HTTP 401
AUTH_TIMEOUT_S = 10.0
NO_AUTH_MESSAGE = 'send {"type": "auth", "token": "<your token>"} as the first message'

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


async def serve_stream(
    websocket: WebSocket,
    hub: Hub,
    access: Access,
    *,
    allowed_origins: Collection[str] | None,
    allowed_hosts: Collection[str],
    ping_interval_s: float,
    auth_timeout_s: float = AUTH_TIMEOUT_S,
    scopes: ScopeCache | None = None,
) -> None:
    if not origin_allowed(websocket.headers, allowed_origins, allowed_hosts):
        hub.reject("websocket from a foreign origin")
        # Close before accepting: the cross-site page never gets a stream.
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    await websocket.accept()  # accepted first, so a browser is told why in the close frame
    who = await _authenticate(websocket, access, auth_timeout_s)
    if isinstance(who, str):
        hub.reject("websocket without a valid token")
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=UNAUTHORIZED, reason=_close_reason(who))
        return
    zones = who.zones or frozenset()
    cache = scopes if scopes is not None else ScopeCache()
    scope = None if all_zones(who) else (lambda text: cache.scoped(zones, text))
    feed = hub.subscribe(_resume_point(websocket))
    sender = asyncio.create_task(_send(websocket, feed, hub, ping_interval_s, scope))
    receiver = asyncio.create_task(_receive(websocket, feed, hub))
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
        hub.unsubscribe(feed)
        sender.cancel()
        receiver.cancel()


def _close_reason(reason: str) -> str:
    # A close frame's reason is at most 123 bytes.
    return reason.encode()[:120].decode(errors="ignore")


async def _authenticate(websocket: WebSocket, access: Access, timeout_s: float) -> Principal | str:
    """The principal from the handshake's Authorization header or the first message; else why not."""
    address = websocket.client.host if websocket.client else "unknown"
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return "Authorization must be 'Bearer <token>'"
        return access.authenticate_token(token, address)
    try:
        async with asyncio.timeout(timeout_s):
            message = await websocket.receive()
    except TimeoutError:
        return f"no token within {timeout_s:g} s: {NO_AUTH_MESSAGE}"
    if message["type"] == "websocket.disconnect":
        return "disconnected before sending a token"
    text = message.get("text")
    try:
        body = _decoder.decode(text) if isinstance(text, str) else None
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict) or body.get("type") != "auth":
        return f"no token: {NO_AUTH_MESSAGE}"
    given = body.get("token")
    return access.authenticate_token(given if isinstance(given, str) else None, address)


def scope_text(zones: frozenset[str], text: str) -> str:
    """`text` with only `zones`' states and alerts (pings and other messages pass as they are)."""
    if not text.startswith(('{"type":"snapshot"', '{"type":"delta"')):
        return text  # a ping: nothing to cut, and no need to decode it
    try:
        msg: Any = _decoder.decode(text)
    except msgspec.DecodeError:
        return text
    if not isinstance(msg, dict):
        return text
    msg["zones"] = [z for z in msg.get("zones") or () if isinstance(z, dict) and z.get("id") in zones]
    msg["alerts"] = [a for a in msg.get("alerts") or () if isinstance(a, dict) and a.get("zone") in zones]
    return _encoder.encode(msg).decode()


class ScopeCache:
    """Cut deltas, shared by every socket of the app: the hub sends one delta text to every feed, so officers
    with the same zones (the same duty, one grid's leaders) cost one cut per delta, not one per phone.

    Only deltas are kept (a snapshot is made afresh for each client, so it would never be asked for twice),
    the newest `size` of them. Single event loop, like the hub.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._cut: OrderedDict[tuple[frozenset[str], str], str] = OrderedDict()
        self.cuts = 0  # messages decoded, cut and encoded
        self.hits = 0  # served from the cache

    def scoped(self, zones: frozenset[str], text: str) -> str:
        if not text.startswith('{"type":"delta"'):
            if text.startswith('{"type":"snapshot"'):
                self.cuts += 1
            return scope_text(zones, text)
        key = (zones, text)
        found = self._cut.get(key)
        if found is not None:
            self.hits += 1
            self._cut.move_to_end(key)
            return found
        self.cuts += 1
        out = self._cut[key] = scope_text(zones, text)
        while len(self._cut) > self.size:
            self._cut.popitem(last=False)
        return out


def _resume_point(websocket: WebSocket) -> tuple[str, int] | None:
    """`/ws?epoch=<epoch>&seq=<last seq seen>` from a reconnecting page; anything unreadable: a snapshot."""
    epoch, seq = websocket.query_params.get("epoch"), websocket.query_params.get("seq")
    if not epoch or seq is None or not seq.isdigit() or len(seq) > 18:
        return None
    return epoch, int(seq)


async def _send(
    websocket: WebSocket, feed: Feed, hub: Hub, ping_interval_s: float, scope: Callable[[str], str] | None
) -> None:
    while True:
        text = await feed.next(ping_interval_s)
        if feed.closed:  # the app is shutting down
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=GOING_AWAY, reason="server shutting down")
            return
        out = text if text is not None else hub.ping_text()
        await websocket.send_text(out if scope is None else scope(out))


async def _receive(websocket: WebSocket, feed: Feed, hub: Hub) -> None:
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
            hub.reject("unreadable message from a websocket client")
