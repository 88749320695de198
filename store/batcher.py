"""A background writer thread for the HTTP stores: a bounded buffer of lines, sent in batches, retried
when the failure is transient and counted when it is not.

- `put()` never blocks on I/O: it appends under a lock; when the buffer is full the oldest lines are dropped
  and counted (`queue_dropped`), so a server outage costs old points, never the caller's time or memory.
- A batch goes out when `batch_size` lines are waiting or `flush_interval_s` has passed since the last send.
- `Transient` failures (connection errors, 5xx, 429) are retried with exponential backoff, keeping the batch
  and its order; new lines keep buffering meanwhile. `Permanent` ones (other 4xx, e.g. a field type
  conflict) are counted as failed with the server's text, and the writer moves on.
- `close()` sends everything still buffered, bounded by `close_timeout_s`; what cannot be sent by then is
  counted as failed, never lost silently.

Flush timing uses the monotonic clock: it schedules I/O and never enters the data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from store.base import StoreStats

log = logging.getLogger(__name__)


class Transient(Exception):
    """Worth retrying: the server was unreachable, overloaded or failing."""


class Permanent(Exception):
    """Retrying cannot help: the server refused the data. `failed` points of the batch were dropped
    (None: all of them); the rest were written (InfluxDB writes the good points of a partial write)."""

    def __init__(self, message: str, failed: int | None = None) -> None:
        super().__init__(message)
        self.failed = failed


# Sends one batch body (lines joined by "\n"); returns normally when written, raises Transient or Permanent.
Sender = Callable[[bytes], None]


class Batcher:
    def __init__(
        self,
        send: Sender,
        stats: StoreStats,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        max_queue: int = 200_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        close_timeout_s: float = 10.0,
        name: str = "store-writer",
    ) -> None:
        if batch_size < 1 or max_queue < batch_size:
            raise ValueError(f"need 1 <= batch_size ({batch_size}) <= max_queue ({max_queue})")
        self._send = send
        self.stats = stats
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.close_timeout_s = close_timeout_s
        self._buf: deque[str] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")  # monotonic time by which close() gives up
        self._close_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def put(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self._cond:
            if self._closing:
                self.stats.points_failed += len(lines)
                self.stats.last_error = f"{len(lines)} points handed to the store after close()"
                return
            self._buf.extend(lines)
            over = len(self._buf) - self.max_queue
            if over > 0:
                for _ in range(over):
                    self._buf.popleft()
                self.stats.queue_dropped += over
            if len(self._buf) >= self.batch_size:
                self._cond.notify()

    def close(self) -> None:
        """Send what is buffered (at most `close_timeout_s`), then stop the thread. Idempotent."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + self.close_timeout_s
            self._cond.notify()
        self._close_requested.set()
        self._thread.join(self.close_timeout_s + 5.0)

    # -- the writer thread ---------------------------------------------------------------------------------

    def _take(self) -> list[str] | None:
        """Wait for a full batch, the flush interval or close; None when closed and drained."""
        with self._cond:
            deadline = time.monotonic() + self.flush_interval_s
            while not self._closing and len(self._buf) < self.batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._buf:
                return None if self._closing else []
            n = min(self.batch_size, len(self._buf))
            return [self._buf.popleft() for _ in range(n)]

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._write(batch)

    def _write(self, batch: list[str]) -> None:
        body = "\n".join(batch).encode()
        delay = self.retry_initial_s
        while True:
            try:
                self._send(body)
            except Transient as err:
                if time.monotonic() >= self._deadline:
                    self._give_up(batch, f"close() timed out while the server was failing: {err}", drain=True)
                    return
                self.stats.retries += 1
                self.stats.last_error = str(err)
                log.warning("store write failed, retrying in %.1fs: %s", delay, err)
                # close() sets the event and the deadline, so a long backoff never outlasts the close timeout.
                wait = min(delay, max(0.0, self._deadline - time.monotonic()))
                if self._close_requested.is_set():
                    time.sleep(wait)
                else:
                    self._close_requested.wait(wait)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except Permanent as err:
                failed = len(batch) if err.failed is None else min(err.failed, len(batch))
                self.stats.points_failed += failed
                self.stats.points_written += len(batch) - failed
                self.stats.batches += 1
                self.stats.last_error = str(err)
                log.error("store refused %d of %d points: %s", failed, len(batch), err)
                return
            except Exception as err:  # a bug in a sender must not kill the writer thread
                log.exception("store sender failed")
                self._give_up(batch, f"unexpected {type(err).__name__}: {err}")
                return
            self.stats.points_written += len(batch)
            self.stats.batches += 1
            return

    def _give_up(self, batch: list[str], reason: str, *, drain: bool = False) -> None:
        """Count `batch` as failed; with `drain`, everything still buffered too (close() ran out of time)."""
        failed = len(batch)
        if drain:
            with self._cond:
                failed += len(self._buf)
                self._buf.clear()
        self.stats.points_failed += failed
        self.stats.batches += 1
        self.stats.last_error = reason
        log.error("store gave up on %d points: %s", failed, reason)
