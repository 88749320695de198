"""The push stream: one WebSocket per wall or officer page. Snapshot first, then deltas, pings when idle.

Messages to the client (JSON text): {"type": "snapshot"|"delta"|"ping", "seq": n, ...}. Deltas carry
consecutive seq numbers after the snapshot's, so a page that sees a gap can ask for a fresh snapshot.
Messages from the client: {"type": "resync"} (send me a snapshot). Anything else is counted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect

from dashboard.feed import Feed
from dashboard.guard import origin_allowed
from dashboard.hub import Hub

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
GOING_AWAY = 1001


async def serve_stream(
    websocket: WebSocket, hub: Hub, *, allowed_origins: list[str] | None, ping_interval_s: float
) -> None:
    if not origin_allowed(websocket.headers, allowed_origins):
        hub.reject("websocket from a foreign origin")
        # Close before accepting: the cross-site page never gets a stream.
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    await websocket.accept()
    feed = hub.subscribe(_resume_point(websocket))
    sender = asyncio.create_task(_send(websocket, feed, hub, ping_interval_s))
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
                log.warning("websocket client ended with %r", exc)
    finally:
        hub.unsubscribe(feed)
        sender.cancel()
        receiver.cancel()


def _resume_point(websocket: WebSocket) -> tuple[str, int] | None:
    """`/ws?epoch=<epoch>&seq=<last seq seen>` from a reconnecting page; anything unreadable: a snapshot."""
    epoch, seq = websocket.query_params.get("epoch"), websocket.query_params.get("seq")
    if not epoch or seq is None or not seq.isdigit() or len(seq) > 18:
        return None
    return epoch, int(seq)


async def _send(websocket: WebSocket, feed: Feed, hub: Hub, ping_interval_s: float) -> None:
    while True:
        text = await feed.next(ping_interval_s)
        if feed.closed:  # the app is shutting down
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=GOING_AWAY, reason="server shutting down")
            return
        await websocket.send_text(text if text is not None else hub.ping_text())


_decoder = msgspec.json.Decoder()


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
        elif isinstance(body, dict) and body.get("type") == "pong":
            continue
        else:
            hub.reject("unreadable message from a websocket client")
