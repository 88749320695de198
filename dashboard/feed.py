"""One connected client's bounded outbox.

A slow client never builds a backlog and never slows the producer: when its queue is full, the backlog is
dropped and the client is marked to receive a fresh snapshot instead (taken when it is actually sent, so it
already contains every dropped delta). Single event loop only: push() and next() run on the same loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Feed:
    def __init__(self, maxsize: int, snapshot: Callable[[], str]) -> None:
        if maxsize < 1:
            raise ValueError(f"client queue size must be at least 1, got {maxsize}")
        self._maxsize = maxsize
        self._snapshot = snapshot
        self._queue: deque[str] = deque()
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

    def push(self, text: str) -> bool:
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
        self._queue.append(text)
        self._ready.set()
        return True

    def resume(self, missed: list[str]) -> None:
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

    async def next(self, wait_s: float) -> str | None:
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
            return self._snapshot()
        return self._queue.popleft()
