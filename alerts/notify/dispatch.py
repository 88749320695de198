"""Delivers notifications off the detection path: a bounded queue in, one job per (recipient, channel URL) out.

The detection loop only calls `submit`, which never waits: when the queue is full the notification is dropped
and counted. `run` takes notifications and starts a job per recipient and channel; a job tries its channel,
retries transient failures with exponential backoff and jitter, never retries permanent ones, and records
every attempt. Sends are limited overall (`concurrency`) and per channel host (`per_channel_concurrency`), and
a job waiting out its backoff holds no send slot, so one slow or dead channel cannot hold up the others.

Typical wiring (the service owns the loop, the clock and the journal)::

    dispatcher = Dispatcher([AppriseChannel()], record=journal.add_attempt, now=clock.now)
    task = asyncio.create_task(dispatcher.run(stop))
    ...                                   # detection: dispatcher.submit(notification)
    stop.set(); await task; await dispatcher.drain(5.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from alerts.model import DeliveryAttempt, Notification, Recipient
from alerts.notify.base import Channel, DeliveryError, redact, scheme_of, scrub

log = logging.getLogger(__name__)


class Dispatcher:
    """Queue, fan-out, retry and record. All methods run on the event loop's thread (submit too).

    Backoff before try k+1 is min(max_backoff_s, base_backoff_s * 2**(k-1)), shortened by a random share of up
    to `jitter` (so many failed jobs do not retry in step); `rng` makes that share reproducible. A server's
    Retry-After (DeliveryError.retry_after_s) lengthens it, up to max_backoff_s.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        record: Callable[[DeliveryAttempt], None],
        now: Callable[[], float],
        max_attempts: int = 5,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        queue_size: int = 1000,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: float = 0.25,
        rng: random.Random | None = None,
        concurrency: int = 32,
        per_channel_concurrency: int = 4,
        max_jobs: int = 2000,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        problems = [
            f"{name} must be {rule}, got {value}"
            for name, value, ok, rule in (
                ("max_attempts", max_attempts, max_attempts >= 1, ">= 1"),
                ("base_backoff_s", base_backoff_s, base_backoff_s >= 0, ">= 0"),
                ("max_backoff_s", max_backoff_s, max_backoff_s >= base_backoff_s, ">= base_backoff_s"),
                ("queue_size", queue_size, queue_size >= 1, ">= 1"),
                ("timeout_s", timeout_s, timeout_s > 0, "> 0"),
                ("jitter", jitter, 0 <= jitter < 1, "in [0, 1)"),
                ("concurrency", concurrency, concurrency >= 1, ">= 1"),
                ("per_channel_concurrency", per_channel_concurrency, per_channel_concurrency >= 1, ">= 1"),
                ("max_jobs", max_jobs, max_jobs >= 1, ">= 1"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("Dispatcher: " + "; ".join(problems))
        self._channels = tuple(channels)
        self._record = record
        self._now = now
        self._monotonic = monotonic
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._base_backoff_s = base_backoff_s
        self._max_backoff_s = max_backoff_s
        self._timeout_s = timeout_s
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._max_jobs = max_jobs
        self._per_channel = per_channel_concurrency
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=queue_size)
        self._sends = asyncio.Semaphore(concurrency)
        self._channel_slots: dict[str, asyncio.Semaphore] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()  # set while fewer than max_jobs jobs are alive
        self._room.set()
        self._closing = asyncio.Event()
        self._counts = dict.fromkeys(
            ("submitted", "delivered", "failed_permanent", "exhausted", "retried", "dropped_queue_full",
             "dropped_closed", "abandoned"),
            0,
        )  # fmt: skip

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start: submitted, delivered, failed_permanent (a permanent error), exhausted (transient
        errors until max_attempts), retried (tries after a transient error), dropped_queue_full, dropped_closed
        (submitted after drain began), abandoned (deliveries drain gave up on), in_flight (live jobs), queued.
        """
        return {**self._counts, "in_flight": len(self._jobs), "queued": self._queue.qsize()}

    def submit(self, n: Notification) -> bool:
        """Queue `n` for delivery without waiting. False (and counted) when the queue is full or closing."""
        if self._closing.is_set():
            self._counts["dropped_closed"] += 1
            log.warning("notification %s not queued: delivery is shutting down", n.id)
            return False
        try:
            self._queue.put_nowait(n)
        except asyncio.QueueFull:
            self._counts["dropped_queue_full"] += 1
            log.warning("notification %s dropped: delivery queue full (%d)", n.id, self._queue.maxsize)
            return False
        self._counts["submitted"] += 1
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Take notifications and start their deliveries until `stop` is set (or drain begins).

        Returns without waiting for deliveries in progress: call `drain` afterwards to finish them.
        """
        stopping = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._closing.wait())]
        try:
            while not (stop.is_set() or self._closing.is_set()):
                if not self._room.is_set():
                    # Too many deliveries alive: stop taking, so the queue (bounded, counted) absorbs the burst.
                    await _first(self._room.wait(), *stopping)
                    continue
                get = asyncio.ensure_future(self._queue.get())
                await asyncio.wait([get, *stopping], return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await get
                if get.done() and not get.cancelled():
                    self._start(get.result())
        finally:
            for t in stopping:
                t.cancel()

    async def drain(self, timeout_s: float) -> int:
        """Stop taking new notifications, deliver what is queued and in progress, for at most `timeout_s`.

        Returns how many deliveries were given up (in progress, in backoff, or still queued at the deadline).
        """
        self._closing.set()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    while not self._queue.empty():
                        self._start(self._queue.get_nowait())
                    if not self._jobs:
                        return 0
                    await asyncio.wait(set(self._jobs))
        except TimeoutError:
            pass
        left = sum(_fan_out_size(self._queue.get_nowait()) for _ in range(self._queue.qsize()))
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        abandoned = left + len(jobs)
        self._counts["abandoned"] += abandoned
        log.warning("delivery drain: gave up %d deliveries after %g s", abandoned, timeout_s)
        return abandoned

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed try `attempt` (1-based) before the next."""
        full = min(self._max_backoff_s, self._base_backoff_s * 2.0 ** (attempt - 1))
        return full * (1.0 - self._jitter * self._rng.random())

    def _start(self, n: Notification) -> None:
        seen: set[tuple[str, str]] = set()
        for r in n.recipients:
            for url in r.channels:
                if (r.person, url) in seen:
                    continue
                seen.add((r.person, url))
                job = asyncio.create_task(self._deliver(n, r, url), name=f"deliver {n.id} {r.person}")
                self._jobs.add(job)
                job.add_done_callback(self._job_done)
        if not seen:
            log.info("notification %s has no recipient channel: nothing to deliver", n.id)
        if len(self._jobs) >= self._max_jobs:
            self._room.clear()

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._jobs.discard(job)
        if len(self._jobs) < self._max_jobs:
            self._room.set()
        if not job.cancelled() and (exc := job.exception()) is not None:
            log.error("delivery job crashed", exc_info=exc)

    async def _deliver(self, n: Notification, r: Recipient, url: str) -> None:
        label = redact(url)
        channel = next((c for c in self._channels if c.handles(url)), None)
        attempt = 1
        while True:
            at, t0, sending = self._now(), self._monotonic(), False
            try:
                if channel is None:
                    raise DeliveryError(
                        f"no channel handles {scheme_of(url) or 'this'}:// URLs; use an Apprise URL (ntfy://, json://, "
                        "dingtalk://, wecombot://, feishu://, gotify://, mailto://) or webpush:<subscription id>",
                        retryable=False,
                    )
                async with self._slot(url):
                    # The attempt starts when it has its slot: waiting for one is not the channel's latency.
                    at, t0, sending = self._now(), self._monotonic(), True
                    await self._send(channel, url, n, r, label)
                error = None
            except DeliveryError as e:
                error = e
            except asyncio.CancelledError:
                if sending:  # the far end may or may not have it: the record says so
                    self._emit(n, r, label, attempt, at, t0, DeliveryError("cancelled at shutdown", True), "")
                raise
            if error is None:
                self._emit(n, r, label, attempt, at, t0, None, "")
                self._counts["delivered"] += 1
                return
            last = not error.retryable or attempt >= self._max_attempts
            note = f"; giving up after {attempt} attempts" if error.retryable and last else ""
            self._emit(n, r, label, attempt, at, t0, error, note)
            if last:
                self._counts["exhausted" if error.retryable else "failed_permanent"] += 1
                log.warning("delivery of %s to %s via %s failed: %s%s", n.id, r.person, label, error.message, note)
                return
            self._counts["retried"] += 1
            delay = self.backoff(attempt)
            if error.retry_after_s is not None:  # the server said when: not sooner, but not past our longest wait
                delay = max(delay, min(error.retry_after_s, self._max_backoff_s))
            await self._sleep(delay)
            attempt += 1

    async def _send(self, channel: Channel, url: str, n: Notification, r: Recipient, label: str) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await channel.send(url, n, r)
        except TimeoutError:
            raise DeliveryError(f"timed out after {self._timeout_s:g} s", retryable=True) from None
        except DeliveryError:
            raise
        except Exception as e:  # a bug in the channel: permanent, a retry would fail the same way
            log.exception("channel %s raised unexpectedly for %s", type(channel).__name__, label)
            raise DeliveryError(f"channel error {type(e).__name__}: {scrub(str(e), url)}", retryable=False) from e

    @contextlib.asynccontextmanager
    async def _slot(self, url: str) -> AsyncIterator[None]:
        # Keyed by scheme and host part as written (held in memory only, never shown): for dingtalk:// and the
        # like that part is the robot's token, so each robot has its own slots, as each self-hosted server has.
        # Per-channel first: a hanging host queues on its own slots without taking global ones.
        key = url.split("/", 3)[2] if "://" in url else url
        per_channel = self._channel_slots.setdefault(key, asyncio.Semaphore(self._per_channel))
        async with per_channel, self._sends:
            yield

    def _emit(
        self, n: Notification, r: Recipient, label: str, attempt: int, at: float, t0: float,
        error: DeliveryError | None, note: str,
    ) -> None:  # fmt: skip
        entry = DeliveryAttempt(
            notification_id=n.id,
            person=r.person,
            channel=label,
            attempt=attempt,
            at=at,
            ok=error is None,
            retryable=error.retryable if error else False,
            error=(error.message + note) if error else "",
            latency_ms=round((self._monotonic() - t0) * 1000.0, 3),
        )
        try:
            self._record(entry)
        except Exception:  # the journal failing must not stop delivery
            log.exception("recording a delivery attempt failed (%s, attempt %d)", label, attempt)


def _fan_out_size(n: Notification) -> int:
    return len({(r.person, url) for r in n.recipients for url in r.channels})


async def _first(*aws: Awaitable[object]) -> None:
    """Wait until the first of `aws` completes; cancel the ones this call created."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t, a in zip(tasks, aws, strict=True):
            if t is not a:
                t.cancel()
