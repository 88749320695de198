"""One connected client's bounded outbox, and the messages it carries.

A slow client never builds a backlog and never slows the producer: when its queue is full, the backlog is
dropped and the client is marked to receive a fresh snapshot instead (taken when it is actually sent, so it
already contains every dropped delta). Single event loop only: push() and next() run on the same loop.

The snapshot source is asynchronous: in the push process (dashboard/pushserver.py) a snapshot is asked of the
service over the link. Deltas that arrive while it is on its way are queued, and those the snapshot already
contains (seq up to the snapshot's) are skipped after it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class Message:
    """A snapshot or delta for clients: its text, encoded once and shared by every socket, and its structure,
    kept when the producer has it (the hub) or decoded at most once when a scoped client needs it (the push
    process receives texts): officers' cuts are made from the structure, never by re-decoding per scope."""

    __slots__ = ("_body", "_text", "kind", "seq")

    def __init__(self, seq: int, kind: str, *, text: str | None = None, body: dict[str, Any] | None = None) -> None:
        if text is None and body is None:
            raise ValueError("a message needs its text or its body")
        self.seq = seq
        self.kind = kind  # "snapshot" or "delta"
        self._text = text
        self._body = body

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = _encoder.encode(self._body).decode()
        return self._text

    def body(self) -> dict[str, Any] | None:
        """The message as a dict (None if its text is not a JSON object)."""
        if self._body is None:
            try:
                found = _decoder.decode(self.text)
            except msgspec.DecodeError:
                return None
            if not isinstance(found, dict):
                return None
            self._body = found
        return self._body


Snapshot = Callable[[], Awaitable[Message]]


RESUME_BYTES = 8_000_000  # the resume window's default bound on the deltas it keeps, in bytes


class ResumeWindow:
    """The newest deltas, kept for pages that reconnect: at most `count` of them and `max_bytes` of text (deltas
    with many open alerts are large), the newest always. The hub keeps one for its in-process /ws, the push
    process one for its clients."""

    __slots__ = ("_deltas", "bytes", "max_bytes")

    def __init__(self, count: int, max_bytes: int) -> None:
        self._deltas: deque[Message] = deque(maxlen=max(1, count))
        self.bytes = 0  # the kept texts' length
        self.max_bytes = max_bytes

    def __iter__(self) -> Iterator[Message]:
        return iter(self._deltas)

    def __len__(self) -> int:
        return len(self._deltas)

    def add(self, message: Message) -> None:
        deltas = self._deltas
        if len(deltas) == deltas.maxlen:
            self.bytes -= len(deltas[0].text)
        deltas.append(message)
        self.bytes += len(message.text)
        while len(deltas) > 1 and self.bytes > self.max_bytes:
            self.bytes -= len(deltas.popleft().text)

    def clear(self) -> None:
        self._deltas.clear()
        self.bytes = 0

    def missed_since(self, last: int, seq: int, limit: int) -> list[Message] | None:
        """The deltas after `last` up to `seq`, if every one is still held and they are at most `limit` (a
        client's queue); None otherwise: a snapshot is then smaller, or the page's seq makes no sense."""
        if not 0 <= last <= seq:
            return None
        missed = [m for m in self._deltas if m.seq > last]
        if len(missed) != seq - last or len(missed) > limit:
            return None
        return missed


class Feed:
    def __init__(self, maxsize: int, snapshot: Snapshot) -> None:
        if maxsize < 1:
            raise ValueError(f"client queue size must be at least 1, got {maxsize}")
        self._maxsize = maxsize
        self._snapshot = snapshot
        self._queue: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._needs_snapshot = True  # a new client starts with a snapshot
        self.closed = False
        self.resyncs = 0  # snapshots sent because the queue overflowed
        self.sent = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def needs_snapshot(self) -> bool:
        return self._needs_snapshot

    def push(self, message: Message) -> bool:
        """Queue one message; False if the client is (now) waiting for a snapshot instead."""
        if self.closed:
            return False
        if self._needs_snapshot:
            return False  # the pending snapshot will already include this change
        if len(self._queue) >= self._maxsize:
            self._queue.clear()
            self._needs_snapshot = True
            self.resyncs += 1
            self._ready.set()
            return False
        self._queue.append(message)
        self._ready.set()
        return True

    def resume(self, missed: list[Message]) -> None:
        """Start with the deltas a reconnecting client missed instead of a snapshot (see Hub.subscribe)."""
        self._queue.clear()
        self._queue.extend(missed)
        self._needs_snapshot = False
        self._ready.set()

    def request_snapshot(self) -> None:
        """The client saw a gap in seq numbers (or asked): replace whatever is queued by a snapshot."""
        self._queue.clear()
        self._needs_snapshot = True
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._ready.set()

    async def next_message(self, wait_s: float) -> Message | None:
        """The next message to send; None if nothing came within `wait_s` s (send a ping) or when closed."""
        if not (self._queue or self._needs_snapshot or self.closed):
            self._ready.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        if self.closed:
            return None
        self.sent += 1
        if self._needs_snapshot:
            self._needs_snapshot = False
            self._queue.clear()
            snap = await self._snapshot()  # deltas arriving meanwhile are queued
            while self._queue and self._queue[0].seq <= snap.seq:
                self._queue.popleft()  # already in the snapshot
            return None if self.closed else snap
        return self._queue.popleft()

    async def next(self, wait_s: float) -> str | None:
        """next_message's text."""
        msg = await self.next_message(wait_s)
        return None if msg is None else msg.text


class FeedHost:
    """The clients of one stream: subscribe (a snapshot first, or a resume from the window) and unsubscribe.
    Shared by the hub (/ws in the service) and the push process's Relayed, which set these attributes."""

    epoch: str
    seq: int
    client_queue: int
    resumed: int  # reconnects served from the resume window instead of a snapshot
    resyncs_closed: int  # resyncs of clients that have since disconnected
    _feeds: set[Feed]
    _recent: ResumeWindow

    def _first_snapshot(self) -> Awaitable[Message]:
        raise NotImplementedError

    def subscribe(self, resume: tuple[str, int] | None = None) -> Feed:
        """A new client's feed. Its first message is a snapshot, unless `resume` = (epoch, last seq seen)
        names this service run and the deltas after that seq are all still held and fit the client's queue:
        then it gets exactly those, and nothing is sent twice."""
        feed = Feed(self.client_queue, self._first_snapshot)
        missed = self._missed_since(resume)
        if missed is not None:
            feed.resume(missed)
            self.resumed += 1
        self._feeds.add(feed)
        return feed

    def _missed_since(self, resume: tuple[str, int] | None) -> list[Message] | None:
        if resume is None or resume[0] != self.epoch:
            return None
        return self._recent.missed_since(resume[1], self.seq, self.client_queue)

    def unsubscribe(self, feed: Feed) -> None:
        if feed in self._feeds:
            self._feeds.discard(feed)
            self.resyncs_closed += feed.resyncs
            feed.close()

    def _close_feeds(self) -> None:
        for feed in list(self._feeds):
            self.unsubscribe(feed)

    @property
    def clients(self) -> int:
        return len(self._feeds)

    @property
    def resyncs(self) -> int:
        """Snapshots sent instead of a backlog to clients that fell behind (ever, all clients)."""
        return self.resyncs_closed + sum(f.resyncs for f in self._feeds)


def ping_text(seq: int, ts: float | None, last_data_age_s: float | None) -> str:
    """The keep-alive every stream sends between deltas: where the stream is, and how old its data."""
    return _encoder.encode({"type": "ping", "seq": seq, "ts": ts, "last_data_age_s": last_data_age_s}).decode()
