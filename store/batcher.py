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

With a disk `Spool` (store/spool.py, docs/storage.md) the outage path changes; the rest stays:

- A batch that fails transiently is appended to the spool instead of being retried in memory, and so is
  everything that arrives while the spool holds anything, so points reach the server in the order they came.
  The memory buffer also spills to the spool when it passes `high_water` lines (a server slower than ingest).
- While the server is down, the oldest spooled record is tried again after a backoff (`retries`); once it
  goes through, the spool is replayed oldest first, one record per request, at most `replay_rate` lines a
  second, so a server that has just come back is not flattened. What arrives during the replay goes behind the
  spool a batch (or a flush interval) at a time, so the records stay full and the spool drains while ingest
  goes on. Then writing goes direct again.
- `close()` spools what is still in memory if the server is down or the spool is not empty, replays what it
  can within `close_timeout_s`, and leaves the rest on disk for the next start: nothing is counted as failed
  for want of a server.
- If the disk refuses a write, the lines stay in memory (bounded by `max_queue`, drops counted) and the
  spool is tried again after `retry_initial_s`.

Flush timing uses the monotonic clock: it schedules I/O and never enters the data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from store.base import StoreStats
from store.spool import Dropped, Spool

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
        spool: Spool | None = None,
        high_water: int | None = None,
        replay_rate: float = 25_000.0,
    ) -> None:
        if batch_size < 1 or max_queue < batch_size:
            raise ValueError(f"need 1 <= batch_size ({batch_size}) <= max_queue ({max_queue})")
        if replay_rate <= 0:
            raise ValueError(f"replay_rate must be positive (lines per second), not {replay_rate}")
        self._spool = spool
        # Past this many lines in memory the writer spills to the spool rather than wait for the server.
        self.high_water = max(batch_size, max_queue // 2) if high_water is None else high_water
        self.replay_rate = replay_rate
        self._down = False  # the last request failed transiently; the spool is retried after a backoff
        self._outage_logged = False  # one warning per outage, not per batch
        self._drop_logged = False
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
        if self._spool is not None:
            try:
                self._run_spooled(self._spool)
            finally:
                self._spool.close()
            return
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
                self._refused(batch, err)
                return
            except Exception as err:  # a bug in a sender must not kill the writer thread
                log.exception("store sender failed")
                self._give_up(batch, f"unexpected {type(err).__name__}: {err}")
                return
            self.stats.points_written += len(batch)
            self.stats.batches += 1
            return

    def _refused(self, batch: list[str], err: Permanent) -> None:
        """The server refused the batch for good: its refused points counted as failed, the rest written."""
        failed = len(batch) if err.failed is None else min(err.failed, len(batch))
        self.stats.points_failed += failed
        self.stats.points_written += len(batch) - failed
        self.stats.batches += 1
        self.stats.last_error = str(err)
        log.error("store refused %d of %d points: %s", failed, len(batch), err)

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

    # -- with a disk spool ----------------------------------------------------------------------------------

    def _run_spooled(self, spool: Spool) -> None:
        delay = self.retry_initial_s
        next_try = 0.0  # monotonic: when the spool may be tried again after a transient failure
        next_send = 0.0  # monotonic: when the replay rate allows the next record
        spool_retry_at = 0.0  # monotonic: when to try the disk again after it refused a write
        spill_at = 0.0  # monotonic: when memory goes behind the spool even short of a batch (server up)
        while True:
            if spool.empty and not self._down and len(self._buf) < self.high_water:
                if self._outage_logged or self._drop_logged:
                    self._log_drained()
                batch = self._take()
                if batch is None:
                    return
                if not batch:
                    continue
                if len(self._buf) >= self.high_water:  # the server is slower than ingest
                    if not self._spool_lines(spool, batch):
                        self._write(batch)
                    continue
                if not self._send_direct(spool, batch):
                    self._down = True
                    next_try = time.monotonic() + delay
                continue
            # Backlog: whatever waits in memory goes behind the spool, then the spool's oldest record is tried.
            now = time.monotonic()
            closing = self._close_requested.is_set()
            # While the server takes the replay, what arrives meanwhile goes behind the spool a batch (or a
            # flush interval) at a time: spilled after every request, it would make one small record per
            # request, and a spool replayed one record per request would shrink no faster than it grows.
            # While the server is down, memory goes to disk at once.
            spill = self._down or closing or len(self._buf) >= self.batch_size or now >= spill_at
            if spill and now >= spool_retry_at:
                if self._spool_memory(spool):
                    spill_at = now + self.flush_interval_s
                else:
                    spool_retry_at = now + self.retry_initial_s
            if closing and (self._down or now >= self._deadline):
                if not self._spool_memory(spool):  # neither server nor disk: count, never lose quietly
                    self._give_up(
                        [], f"close(): the spool refused the last points ({self.stats.last_error})", drain=True
                    )
                return
            if spool.empty:  # replayed, or the disk refused the lines: memory goes to the server itself
                if self._down and now < next_try:
                    self._pause(next_try - now)
                    continue
                self._down = False
                continue
            due = max(next_send, next_try if self._down else 0.0)
            if now < due:
                self._pause(due - now)
                continue
            rec = spool.peek()
            if rec is None:
                continue
            outcome = self._attempt(rec.lines)
            if outcome == "transient":
                if not self._down:
                    self._down = True
                    delay = self.retry_initial_s
                next_try = time.monotonic() + delay
                delay = min(delay * 2, self.retry_max_s)
                continue
            if self._down:
                log.warning("InfluxDB answers again: replaying %d spooled points", spool.pending_lines)
                self._down = False
            delay = self.retry_initial_s
            spool.consume(rec)
            if outcome == "written":
                self.stats.replayed += len(rec.lines)
            next_send = time.monotonic() + len(rec.lines) / self.replay_rate

    def _pause(self, seconds: float) -> None:
        """Sleep up to `seconds` (and at most the flush interval), waking early when a batch is waiting."""
        with self._cond:
            if self._closing or len(self._buf) < self.batch_size:
                self._cond.wait(max(0.0, min(seconds, self.flush_interval_s)))

    def _attempt(self, batch: list[str]) -> str:
        """Send once: "written", "refused" (counted as failed, not to be retried) or "transient"."""
        try:
            self._send("\n".join(batch).encode())
        except Transient as err:
            self.stats.retries += 1
            self.stats.last_error = str(err)
            return "transient"
        except Permanent as err:
            self._refused(batch, err)
            return "refused"
        except Exception as err:  # a bug in a sender must not kill the writer thread
            log.exception("store sender failed")
            self._give_up(batch, f"unexpected {type(err).__name__}: {err}")
            return "refused"
        self.stats.points_written += len(batch)
        self.stats.batches += 1
        return "written"

    def _send_direct(self, spool: Spool, batch: list[str]) -> bool:
        """Send a batch with an empty spool; False when the server failed and the batch went to the spool."""
        if self._attempt(batch) != "transient":
            return True
        if not self._outage_logged:
            self._outage_logged = True
            log.warning(
                "InfluxDB unreachable (%s): spooling points to %s (bound %d bytes) until it answers",
                self.stats.last_error,
                spool.directory,
                spool.max_bytes,
            )
        if not self._spool_lines(spool, batch):
            with self._cond:  # the disk failed too: keep them in memory, first in line
                self._buf.extendleft(reversed(batch))
        return False

    def _spool_memory(self, spool: Spool) -> bool:
        """Move everything buffered in memory to the spool, in batch_size records; False if the disk failed
        (the lines not written stay in memory, in order)."""
        while True:
            with self._cond:
                if not self._buf:
                    return True
                n = min(self.batch_size, len(self._buf))
                chunk = [self._buf.popleft() for _ in range(n)]
            if not self._spool_lines(spool, chunk):
                with self._cond:
                    self._buf.extendleft(reversed(chunk))
                return False

    def _spool_lines(self, spool: Spool, lines: list[str]) -> bool:
        try:
            dropped = spool.append(lines)
        except OSError as err:
            self.stats.last_error = (
                f"cannot write the InfluxDB spool in {spool.directory} ({err}); free disk space or fix its "
                "permissions; points wait in memory meanwhile"
            )
            log.error("%s", self.stats.last_error)
            return False
        if dropped is not None:
            self._note_drop(spool, dropped)
        return True

    def _note_drop(self, spool: Spool, dropped: Dropped) -> None:
        st = self.stats
        if not self._drop_logged:
            self._drop_logged = True
            log.error(
                "InfluxDB spool %s reached its bound of %d bytes: deleting the oldest spooled points "
                "(first %d, event times %s to %s); further drops in this outage are counted in "
                "spool_dropped, not logged",
                spool.directory,
                spool.max_bytes,
                dropped.lines,
                _iso(dropped.min_ts / 1e9),
                _iso(dropped.max_ts / 1e9),
            )
        st.last_error = (
            f"InfluxDB spool full: {st.spool_dropped} oldest points dropped so far, event times "
            f"{_iso(st.spool_dropped_from_ts)} to {_iso(st.spool_dropped_until_ts)}"
        )

    def _log_drained(self) -> None:
        st = self.stats
        lost = (
            f"; {st.spool_dropped} dropped in all (event times {_iso(st.spool_dropped_from_ts)} to "
            f"{_iso(st.spool_dropped_until_ts)})"
            if st.spool_dropped
            else ""
        )
        log.warning("InfluxDB spool drained: %d points replayed in all%s", st.replayed, lost)
        self._outage_logged = False
        self._drop_logged = False


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
