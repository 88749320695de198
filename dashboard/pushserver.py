"""The push process: the /ws stream served on dashboard.push_port, out of the service's process.

Started and supervised by the service (dashboard/relay.py) with one end of a socket pair (dashboard/link.py).
It serves the main port's /ws protocol unchanged (dashboard/stream.py: the token first or a Bearer header,
Host and Origin checks, snapshot, deltas, pings, resume with epoch and seq, resync, officers' zones), with:
- the deltas the hub encoded, read once from the link and queued to every client's bounded feed (a slow
  client gets a snapshot instead of a backlog); the last `client_queue` of them kept for resuming pages;
- snapshots asked of the service: one request for every client waiting at the same seq, and a snapshot kept
  for the next second's connections at that seq (2,000 walls reconnecting cost the service a few encodes);
- tokens checked by the service (its roster, its failed-token limit): a token is passed on, never logged;
- pings built from the service's beat (its seq, clock and data age, each second).
It exits when the link closes (the service stopped or died) after closing its sockets with 1001, and
ignores SIGINT: a Ctrl-C in the terminal reaches the service, which stops it in order.

It serves on the listening socket the service bound (`--listen-fd`): it never binds a port itself, so a
restart cannot find the port taken. When it cannot run, it says why in one log line and exits non-zero.

    python -m dashboard.pushserver --link-fd N --listen-fd M   (the service does this; not for use by hand)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from dashboard import link, logredact
from dashboard.access import Refused
from dashboard.auth import Principal
from dashboard.feed import RESUME_BYTES, Feed, FeedHost, Message, ResumeWindow, ping_text
from dashboard.guard import LOOPBACK_HOSTS, RequestGuard
from dashboard.stream import AUTH_TIMEOUT_S, PING_INTERVAL_S, ScopeCache, serve_stream

log = logging.getLogger("crowdflow.push")

SNAPSHOT_REUSE_S = 1.0  # a snapshot at the current seq serves new clients this long (its data age moves on)
ANSWER_TIMEOUT_S = 5.0  # a token check or snapshot the service has not answered: ask again / refuse
STATS_S = 1.0

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class PushSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the service tells the push process in its hello, besides the hub's state (Hello)."""

    host: str
    port: int
    allowed_hosts: list[str]
    allowed_origins: list[str] | None
    ping_interval_s: float = PING_INTERVAL_S
    auth_timeout_s: float = AUTH_TIMEOUT_S
    site_port: int | None = None  # the dashboard's own port: its pages' Origin passes (guard.origin_allowed)
    answer_timeout_s: float = ANSWER_TIMEOUT_S  # a token check or snapshot not answered by then: refused / asked again


class Hello(PushSettings, frozen=True, kw_only=True):
    """The link's first frame: the settings and the hub's epoch, seq, queue size and resume window bound."""

    epoch: str
    seq: int
    client_queue: int
    resume_bytes: int = RESUME_BYTES


class Relayed(FeedHost):
    """The hub's stream as the push process has it: a StreamSource (dashboard/stream.py) over the link."""

    def __init__(self, hello: Hello, writer: asyncio.StreamWriter) -> None:
        self.epoch = hello.epoch
        self.seq = hello.seq
        self.client_queue = hello.client_queue
        self.answer_timeout_s = hello.answer_timeout_s
        self._writer = writer
        self._feeds: set[Feed] = set()
        self._recent = ResumeWindow(hello.client_queue, hello.resume_bytes)
        self._snapshot: Message | None = None
        self._snapshot_at = 0.0
        self._asked: asyncio.Future[Message] | None = None
        self._auth_ids = itertools.count(1)
        self._auths: dict[int, asyncio.Future[Principal | Refused]] = {}
        self._beat: dict[str, Any] = {"now": time.time(), "age": None}
        self._beat_at = time.monotonic()
        self.rejected: Counter[str] = Counter()
        self.resyncs_closed = 0
        self.deltas = 0
        self.gaps = 0  # deltas out of order on the link (never expected): everyone resynced
        self.link_resyncs = 0
        self.snapshots_asked = 0
        self.resumed = 0
        self.scopes = ScopeCache()

    # -- from the service ------------------------------------------------------------------------------

    def on_delta(self, seq: int, text: str) -> None:
        if seq <= self.seq:
            return  # already had it (a resync frame's seq can meet the delta it preceded)
        if seq != self.seq + 1:
            self.gaps += 1
            self.on_resync(seq - 1)
        self.seq = seq
        self.deltas += 1
        message = Message(seq, "delta", text=text)
        self._recent.add(message)
        for feed in self._feeds:
            feed.push(message)

    def on_resync(self, seq: int) -> None:
        """Deltas were dropped on the link: nobody's picture can be completed from deltas any more."""
        self.link_resyncs += 1
        self.seq = seq
        self._recent.clear()
        self._snapshot = None
        for feed in self._feeds:
            feed.request_snapshot()

    def on_snapshot(self, seq: int, text: str) -> None:
        message = Message(seq, "snapshot", text=text)
        if seq >= self.seq:
            self._snapshot, self._snapshot_at = message, time.monotonic()
        asked, self._asked = self._asked, None
        if asked is not None and not asked.done():
            asked.set_result(message)

    def on_auth(self, answer: dict[str, Any]) -> None:
        waiting = self._auths.pop(answer.get("id", -1), None)
        if waiting is None or waiting.done():
            return
        found = answer.get("principal")
        if isinstance(found, dict):
            try:
                waiting.set_result(msgspec.convert(found, Principal))
                return
            except msgspec.ValidationError:
                pass
        reason = answer.get("reason")
        if isinstance(reason, str):
            waiting.set_result(Refused(reason, temporary=answer.get("temporary") is True))
        else:  # not judged: the page keeps its token and tries again
            waiting.set_result(Refused("the service could not check the token: try again", temporary=True))

    def on_beat(self, beat: dict[str, Any]) -> None:
        self._beat, self._beat_at = beat, time.monotonic()

    # -- StreamSource ----------------------------------------------------------------------------------

    def _first_snapshot(self) -> Awaitable[Message]:
        return self.snapshot()

    def close_all(self) -> None:
        self._close_feeds()

    def ping_text(self) -> str:
        since = time.monotonic() - self._beat_at  # the beat is at most a second old; age it by that
        now, age = self._beat.get("now"), self._beat.get("age")
        return ping_text(
            self.seq,
            now + since if isinstance(now, int | float) else None,
            round(age + since, 1) if isinstance(age, int | float) else None,
        )

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    # -- asking the service ----------------------------------------------------------------------------

    async def snapshot(self) -> Message:
        """A snapshot at the newest seq this process has (or later): shared by every client asking meanwhile."""
        kept = self._snapshot
        if kept is not None and kept.seq == self.seq and time.monotonic() - self._snapshot_at < SNAPSHOT_REUSE_S:
            return kept
        while True:
            if self._asked is None or self._asked.done():
                self._asked = asyncio.get_running_loop().create_future()
                self.snapshots_asked += 1
                self._writer.write(link.frame(link.SNAPSHOT_PLEASE, b""))
            try:
                return await asyncio.wait_for(asyncio.shield(self._asked), self.answer_timeout_s)
            except TimeoutError:
                self._asked = None  # lost (a link far past its bound): ask again

    async def check_token(self, token: str | None, address: str) -> Principal | Refused:
        ask_id = next(self._auth_ids)
        waiting: asyncio.Future[Principal | Refused] = asyncio.get_running_loop().create_future()
        self._auths[ask_id] = waiting
        self._writer.write(link.json_frame(link.AUTH, {"id": ask_id, "token": token, "address": address}))
        try:
            return await asyncio.wait_for(waiting, self.answer_timeout_s)
        except TimeoutError:
            return Refused("the service did not check the token in time: try again", temporary=True)
        finally:
            self._auths.pop(ask_id, None)

    def stats(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "resyncs": self.resyncs,
            "seq": self.seq,
            "deltas": self.deltas,
            "gaps": self.gaps,
            "link_resyncs": self.link_resyncs,
            "snapshots_asked": self.snapshots_asked,
            "resumed": self.resumed,
            "scope_cuts": self.scopes.cuts,
            "scope_hits": self.scopes.hits,
            "rejected": dict(self.rejected),
        }


async def _read_link(reader: asyncio.StreamReader, relayed: Relayed) -> None:
    while True:
        try:
            kind, body = await link.read_frame(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the service is gone
        if kind == link.DELTA:
            relayed.on_delta(*link.split_text(body))
        elif kind == link.SNAPSHOT:
            relayed.on_snapshot(*link.split_text(body))
        elif kind == link.AUTH_ANSWER:
            relayed.on_auth(_decoder.decode(body))
        elif kind == link.BEAT:
            relayed.on_beat(_decoder.decode(body))
        elif kind == link.RESYNC:
            relayed.on_resync(int(_decoder.decode(body)["seq"]))
        else:
            log.warning("unknown frame %r on the link; ignored", kind)


def build_app(relayed: Relayed, hello: Hello) -> Starlette:
    hosts = tuple(hello.allowed_hosts) if hello.allowed_hosts else LOOPBACK_HOSTS

    async def ws(websocket: WebSocket) -> None:
        await serve_stream(
            websocket, relayed, relayed.check_token, allowed_origins=hello.allowed_origins, allowed_hosts=hosts,
            ping_interval_s=hello.ping_interval_s, auth_timeout_s=hello.auth_timeout_s, scopes=relayed.scopes,
            site_port=hello.site_port,
        )  # fmt: skip

    async def healthz(request: Request) -> Response:
        # For a reverse proxy's health check: counters only, like the service's /healthz.
        return Response(_encoder.encode({"status": "ok", **relayed.stats()}), media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        relayed.close_all()  # every sender closes its socket with 1001

    app = Starlette(routes=[WebSocketRoute("/ws", ws), Route("/healthz", healthz)], lifespan=lifespan)
    app.add_middleware(RequestGuard, allowed_hosts=hosts)
    return app


async def serve(fd: int, listen_fd: int) -> int:
    listener = socket.socket(fileno=listen_fd)
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        kind, body = await link.read_frame(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0  # the service went before saying hello
    if kind != link.HELLO:
        log.error("the link did not start with a hello (%r)", kind)
        return 2
    hello = msgspec.json.decode(body, type=Hello)
    relayed = Relayed(hello, writer)
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(relayed, hello), host=hello.host, port=hello.port, log_level="warning", lifespan="on",
            ws_max_size=65536, ws_per_message_deflate=False,  # the same as the main port (crowdflow/service.py)
        )
    )  # fmt: skip
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    serving = asyncio.create_task(_serve(server, listener), name="push-server")
    reading = asyncio.create_task(_read_link(reader, relayed), name="push-link")
    stopping = asyncio.create_task(stop.wait(), name="push-stop")
    reporting = asyncio.create_task(_report(server, relayed, writer), name="push-stats")
    try:
        await asyncio.wait({serving, reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        relayed.close_all()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(serving), 5.0)
        for task in (serving, reading, stopping, reporting):
            task.cancel()
        await asyncio.gather(serving, reading, stopping, reporting, return_exceptions=True)
        writer.close()
    return 0 if server.started else 3  # 3: it could not serve (said why above): the service retries later


async def _serve(server: uvicorn.Server, listener: socket.socket) -> None:
    try:
        await server.serve(sockets=[listener])
    except (Exception, SystemExit) as e:  # SystemExit: uvicorn's way of failing to start (it logged why)
        log.error("push process could not serve /ws: %s: %s", type(e).__name__, e)
        lifespan = getattr(server, "lifespan", None)
        if lifespan is not None:  # end the app's lifespan cleanly: cancelled, uvicorn logs it as a traceback
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lifespan.shutdown(), 5.0)


async def _report(server: uvicorn.Server, relayed: Relayed, writer: asyncio.StreamWriter) -> None:
    while not server.started:  # noqa: ASYNC110  uvicorn says so only by this flag, set once it listens
        await asyncio.sleep(0.02)
    writer.write(link.json_frame(link.READY, {"pid": os.getpid()}))
    while True:
        writer.write(link.json_frame(link.STATS, relayed.stats()))
        await asyncio.sleep(STATS_S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboard.pushserver", description=__doc__)
    ap.add_argument("--link-fd", type=int, required=True, help="this end of the service's socket pair")
    ap.add_argument("--listen-fd", type=int, required=True, help="the push port's socket, bound by the service")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service stops us (link closed, or SIGTERM)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logredact.install()
    try:
        return asyncio.run(serve(args.link_fd, args.listen_fd))
    except (Exception, SystemExit) as e:  # one line for the service's log, not a traceback on every retry
        log.error("push process failed: %s: %s", type(e).__name__, e)
        return 3


if __name__ == "__main__":
    sys.exit(main())
