"""Dispatcher: retries with backoff, no retry for permanent failures, every attempt recorded, isolation, drain.

Real deliveries go through AppriseChannel to a local receiver; a few in-memory channels script what a real
server cannot do on cue (block until released, raise a bug). Backoff waits go through an injected sleep.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from alerts.model import DeliveryAttempt, Notification, Recipient
from alerts.notify import DeliveryError, Dispatcher
from alerts.notify.apprise_channel import AppriseChannel
from domain.clock import ManualClock
from domain.levels import Level
from tests.alerts.receiver import HANG, Receiver


def person(pid: str, *channels: str) -> Recipient:
    return Recipient(person=pid, name=pid.title(), role="officer", channels=channels)


def note(nid: str, *recipients: Recipient) -> Notification:
    return Notification(
        id=nid, key="a1", alert_ids=("a1",), zones=("S03",), kind="raised", level=Level.II, step=0,
        title="II orange · Riverside S03", body="S03 at 81% of capacity.", reason="new alert",
        created_at=0.0, recipients=recipients,
    )  # fmt: skip


class Recorder:
    """The `record` callback: keeps attempts and lets a test wait for a condition on them (no sleeps)."""

    def __init__(self) -> None:
        self.attempts: list[DeliveryAttempt] = []
        self._changed = asyncio.Event()

    def __call__(self, a: DeliveryAttempt) -> None:
        self.attempts.append(a)
        self._changed.set()

    def of(self, pid: str) -> list[DeliveryAttempt]:
        return [a for a in self.attempts if a.person == pid]

    async def until(self, ok: Callable[[], bool], timeout_s: float = 15.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not ok():
                self._changed.clear()
                await self._changed.wait()


class Sleeps:
    """The injected sleep: notes each backoff asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class Scripted:
    """An in-memory channel for "fake://<name>" URLs: per name, a list of outcomes consumed in order.

    An outcome is "ok", a DeliveryError to raise, an Exception (a channel bug), or an asyncio.Event to wait on.
    """

    def __init__(self, **outcomes: list[object]) -> None:
        self.outcomes = outcomes
        self.calls: list[str] = []
        self.called = asyncio.Event()

    def handles(self, url: str) -> bool:
        return url.startswith("fake://")

    async def send(self, url: str, n: Notification, r: Recipient) -> None:
        name = url.removeprefix("fake://")
        self.calls.append(name)
        self.called.set()
        todo = self.outcomes[name]
        outcome = todo.pop(0) if len(todo) > 1 else todo[0]
        if isinstance(outcome, asyncio.Event):
            await outcome.wait()
        elif isinstance(outcome, BaseException):
            raise outcome


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def apprise() -> Iterator[AppriseChannel]:
    ch = AppriseChannel(timeout_s=5.0)
    yield ch
    ch.close()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Dispatcher], None]]:
    """Start a dispatcher's run loop; stopped and drained after the test."""
    started: list[tuple[Dispatcher, asyncio.Event, asyncio.Task[None]]] = []

    def start(d: Dispatcher) -> None:
        stop = asyncio.Event()
        started.append((d, stop, asyncio.create_task(d.run(stop))))

    yield start
    for d, stop, task in started:
        stop.set()
        await task
        await d.drain(5.0)


def dispatcher(channels: list[object], rec: Recorder, sleeps: Sleeps, **kw: object) -> Dispatcher:
    kw.setdefault("jitter", 0.0)
    return Dispatcher(channels, record=rec, now=ManualClock(1_700_000_000.0).now, sleep=sleeps, **kw)  # type: ignore[arg-type]


async def test_transient_failure_recovers_on_third_try(
    receiver: Receiver, apprise: AppriseChannel, rec: Recorder, sleeps: Sleeps, running: Callable[[Dispatcher], None]
) -> None:
    receiver.script("/hook", 503, 503, 200)
    d = dispatcher([apprise], rec, sleeps)
    running(d)
    assert d.submit(note("n1", person("p1", receiver.url("json", "/hook"))))
    await rec.until(lambda: any(a.ok for a in rec.attempts))

    assert [(a.attempt, a.ok, a.retryable) for a in rec.attempts] == [
        (1, False, True),
        (2, False, True),
        (3, True, False),
    ]
    assert all("HTTP 503" in a.error for a in rec.attempts[:2]) and rec.attempts[2].error == ""
    assert {(a.notification_id, a.person, a.channel) for a in rec.attempts} == {
        ("n1", "p1", f"json://127.0.0.1:{receiver.port}")
    }
    assert all(a.at == 1_700_000_000.0 and a.latency_ms > 0 for a in rec.attempts)
    assert len(receiver.hits("/hook")) == 3  # delivered exactly once, after two refusals
    assert sleeps.delays == [1.0, 2.0]
    s = d.stats
    assert (s["submitted"], s["delivered"], s["retried"], s["failed_permanent"]) == (1, 1, 2, 0)


async def test_permanent_failure_is_not_retried(
    receiver: Receiver, apprise: AppriseChannel, rec: Recorder, sleeps: Sleeps, running: Callable[[Dispatcher], None]
) -> None:
    receiver.script("/hook", 400)
    d = dispatcher([apprise], rec, sleeps)
    running(d)
    d.submit(note("n1", person("p1", receiver.url("json", "/hook"))))
    await rec.until(lambda: len(rec.attempts) == 1)
    await d.drain(5.0)

    [a] = rec.attempts
    assert (a.attempt, a.ok, a.retryable) == (1, False, False) and "HTTP 400" in a.error
    assert len(receiver.hits("/hook")) == 1 and sleeps.delays == []
    assert (d.stats["failed_permanent"], d.stats["retried"], d.stats["delivered"]) == (1, 0, 0)


async def test_url_no_channel_handles_is_recorded_permanent(
    apprise: AppriseChannel, rec: Recorder, sleeps: Sleeps, running: Callable[[Dispatcher], None]
) -> None:
    d = dispatcher([apprise], rec, sleeps)
    running(d)
    d.submit(note("n1", person("p1", "foo://secret-token@host/path")))
    await rec.until(lambda: len(rec.attempts) == 1)

    [a] = rec.attempts
    assert (a.ok, a.retryable, a.channel) == (False, False, "foo://***")
    assert "no channel handles foo://" in a.error and "secret-token" not in a.error
    assert d.stats["failed_permanent"] == 1 and sleeps.delays == []


async def test_hanging_server_does_not_delay_a_healthy_channel(
    receiver: Receiver, apprise: AppriseChannel, rec: Recorder, sleeps: Sleeps, running: Callable[[Dispatcher], None]
) -> None:
    receiver.script("/slow", HANG)
    d = dispatcher([apprise], rec, sleeps, timeout_s=1.0, max_attempts=2)
    running(d)
    # The hanging recipient comes first in the notification.
    d.submit(note("n1", person("stuck", receiver.url("json", "/slow")), person("fine", receiver.url("json", "/ok"))))
    await rec.until(lambda: len(rec.of("stuck")) == 2)

    assert rec.attempts[0].person == "fine" and rec.attempts[0].ok  # before the hanging one's first timeout
    assert rec.attempts[0].latency_ms < 1000
    stuck = rec.of("stuck")
    assert [(a.attempt, a.ok, a.retryable) for a in stuck] == [(1, False, True), (2, False, True)]
    assert "timed out after 1 s" in stuck[0].error and "giving up after 2 attempts" in stuck[1].error
    assert sleeps.delays == [1.0]
    assert (d.stats["delivered"], d.stats["exhausted"], d.stats["retried"]) == (1, 1, 1)


async def test_blocked_channel_holds_up_neither_others_nor_next_notifications(
    rec: Recorder, sleeps: Sleeps, running: Callable[[Dispatcher], None]
) -> None:
    gate = asyncio.Event()
    fake = Scripted(stuck=[gate, "ok"], fine=["ok"])
    d = dispatcher([fake], rec, sleeps, per_channel_concurrency=1, concurrency=4, timeout_s=30.0)
    running(d)
    for i in range(3):
        d.submit(note(f"n{i}", person("a", "fake://stuck"), person("b", "fake://fine")))
    await rec.until(lambda: len(rec.of("b")) == 3)
    # b's three are done while a's first send hangs and the other two wait for a's one channel slot.
    assert rec.of("a") == [] and fake.calls.count("stuck") == 1

    gate.set()
    await rec.until(lambda: len(rec.of("a")) == 3)
    assert all(a.ok for a in rec.attempts) and d.stats["delivered"] == 6


async def test_queue_full_is_a_counted_drop(rec: Recorder, sleeps: Sleeps) -> None:
    d = dispatcher([Scripted(x=["ok"])], rec, sleeps, queue_size=2)
    results = [d.submit(note(f"n{i}", person("p", "fake://x"))) for i in range(3)]
    assert results == [True, True, False]
    assert (d.stats["submitted"], d.stats["dropped_queue_full"], d.stats["queued"]) == (2, 1, 2)
    assert await d.drain(5.0) == 0
    assert [a.notification_id for a in rec.attempts] == ["n0", "n1"]


async def test_too_many_live_deliveries_stop_the_intake(
    rec: Recorder, sleeps: Sleeps, running: Callable[[Dispatcher], None]
) -> None:
    gate = asyncio.Event()
    fake = Scripted(x=[gate])
    d = dispatcher([fake], rec, sleeps, max_jobs=1, queue_size=1, timeout_s=30.0)
    running(d)
    assert d.submit(note("n0", person("p", "fake://x")))
    await fake.called.wait()  # n0's delivery is under way
    assert d.stats["in_flight"] == 1
    assert d.submit(note("n1", person("p", "fake://x")))  # waits in the queue: no room for another job
    assert not d.submit(note("n2", person("p", "fake://x")))
    assert (d.stats["queued"], d.stats["dropped_queue_full"]) == (1, 1)
    gate.set()
    await rec.until(lambda: len(rec.attempts) == 2)
    assert [a.notification_id for a in rec.attempts] == ["n0", "n1"]


async def test_drain_delivers_what_is_queued_then_refuses(
    receiver: Receiver, apprise: AppriseChannel, rec: Recorder, sleeps: Sleeps
) -> None:
    d = dispatcher([apprise], rec, sleeps)
    d.submit(note("n1", person("p1", receiver.url("json", "/a"))))
    d.submit(note("n2", person("p2", receiver.url("json", "/b")), person("p3", receiver.url("ntfy", "/t"))))
    assert await d.drain(10.0) == 0

    assert sorted(a.person for a in rec.attempts if a.ok) == ["p1", "p2", "p3"]
    assert len(receiver.requests) == 3
    assert not d.submit(note("n3", person("p1", receiver.url("json", "/a"))))
    assert d.stats["dropped_closed"] == 1 and d.stats["in_flight"] == 0


async def test_drain_while_running_ends_the_run_loop(rec: Recorder, sleeps: Sleeps) -> None:
    d = dispatcher([Scripted(x=["ok"])], rec, sleeps)
    task = asyncio.create_task(d.run(asyncio.Event()))  # a stop that is never set
    d.submit(note("n1", person("p", "fake://x")))
    assert await d.drain(5.0) == 0
    async with asyncio.timeout(5.0):
        await task
    assert [a.ok for a in rec.attempts] == [True] and d.stats["in_flight"] == 0


async def test_drain_gives_up_at_its_deadline(
    receiver: Receiver, rec: Recorder, sleeps: Sleeps, running: Callable[[Dispatcher], None]
) -> None:
    receiver.script("/slow", HANG)
    slow = AppriseChannel(timeout_s=30.0)
    try:
        d = dispatcher([slow], rec, sleeps, timeout_s=30.0, queue_size=5)
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        d.submit(note("n1", person("p1", receiver.url("json", "/slow"))))
        await asyncio.to_thread(receiver.wait_until, lambda r: len(r.hits("/slow")) == 1)  # n1 is in flight
        stop.set()
        await task
        d.submit(note("n2", person("p2", receiver.url("json", "/slow")), person("p3", receiver.url("json", "/slow"))))
        assert await d.drain(0.3) == 3  # n1, and n2's two deliveries that drain started
    finally:
        slow.close()
    assert sorted((a.person, a.ok, a.retryable, a.error) for a in rec.attempts) == [
        (p, False, True, "cancelled at shutdown") for p in ("p1", "p2", "p3")
    ]
    assert d.stats["abandoned"] == 3 and d.stats["in_flight"] == 0 and d.stats["queued"] == 0


async def test_drain_without_run_cancels_what_is_stuck_at_its_deadline(rec: Recorder, sleeps: Sleeps) -> None:
    gate = asyncio.Event()
    d = dispatcher([Scripted(x=[gate], y=[gate])], rec, sleeps, timeout_s=30.0)
    d.submit(note("n1", person("p1", "fake://x", "fake://y"), person("p2", "fake://x")))
    assert await d.drain(0.05) == 3
    assert len(rec.attempts) == 3 and d.stats["abandoned"] == 3


@pytest.mark.parametrize(("max_backoff", "expected"), [(60.0, [1.0, 2.0, 4.0, 8.0]), (3.0, [1.0, 2.0, 3.0, 3.0])])
async def test_exponential_backoff_up_to_the_cap(
    rec: Recorder, sleeps: Sleeps, max_backoff: float, expected: list[float]
) -> None:
    fake = Scripted(x=[DeliveryError("HTTP 503", retryable=True)])
    d = dispatcher([fake], rec, sleeps, max_attempts=5, max_backoff_s=max_backoff)
    d.submit(note("n1", person("p", "fake://x")))
    await d.drain(5.0)
    assert sleeps.delays == expected
    assert [a.attempt for a in rec.attempts] == [1, 2, 3, 4, 5] and len(fake.calls) == 5
    assert rec.attempts[-1].error == "HTTP 503; giving up after 5 attempts"
    assert (d.stats["exhausted"], d.stats["retried"], d.stats["failed_permanent"]) == (1, 4, 0)


async def test_retry_after_lengthens_the_wait_up_to_the_cap(rec: Recorder, sleeps: Sleeps) -> None:
    fake = Scripted(
        x=[DeliveryError("HTTP 429", True, retry_after_s=7.0), DeliveryError("HTTP 429", True, 600.0), "ok"]
    )
    d = dispatcher([fake], rec, sleeps, max_backoff_s=30.0)
    d.submit(note("n1", person("p", "fake://x")))
    await d.drain(5.0)
    assert sleeps.delays == [7.0, 30.0] and rec.attempts[-1].ok


async def test_jitter_shortens_within_bounds_and_is_seedable(rec: Recorder) -> None:
    def delays(seed: int) -> list[float]:
        d = Dispatcher([], record=rec, now=lambda: 0.0, jitter=0.5, rng=random.Random(seed))
        return [d.backoff(k) for k in range(1, 7)]

    first = delays(7)
    assert first == delays(7) and first != delays(8)
    for k, got in enumerate(first, start=1):
        full = min(60.0, 2.0 ** (k - 1))
        assert full * 0.5 <= got <= full


async def test_a_channel_bug_is_recorded_permanent(rec: Recorder, sleeps: Sleeps) -> None:
    d = dispatcher([Scripted(x=[KeyError("boom")])], rec, sleeps)
    d.submit(note("n1", person("p", "fake://x")))
    await d.drain(5.0)
    [a] = rec.attempts
    assert (a.ok, a.retryable) == (False, False) and a.error.startswith("channel error KeyError")


async def test_a_failing_journal_does_not_stop_delivery(sleeps: Sleeps) -> None:
    seen: list[DeliveryAttempt] = []

    def flaky_record(a: DeliveryAttempt) -> None:
        seen.append(a)
        raise OSError("disk full")

    fake = Scripted(x=[DeliveryError("HTTP 503", retryable=True), "ok"])
    d = Dispatcher([fake], record=flaky_record, now=lambda: 0.0, sleep=sleeps, jitter=0.0)
    d.submit(note("n1", person("p", "fake://x")))
    assert await d.drain(5.0) == 0
    assert [a.ok for a in seen] == [False, True] and d.stats["delivered"] == 1


async def test_each_recipient_channel_once_and_records_redacted(
    receiver: Receiver, apprise: AppriseChannel, rec: Recorder, sleeps: Sleeps
) -> None:
    gotify = receiver.url("gotify", "/AppTokenXYZ123")
    d = dispatcher([apprise], rec, sleeps)
    d.submit(note("n1", person("p1", gotify, gotify, receiver.url("json", "/hook")), person("p2", gotify)))
    await d.drain(10.0)
    assert sorted((a.person, a.channel) for a in rec.attempts) == [
        ("p1", f"gotify://127.0.0.1:{receiver.port}"),
        ("p1", f"json://127.0.0.1:{receiver.port}"),
        ("p2", f"gotify://127.0.0.1:{receiver.port}"),
    ]
    assert all(a.ok for a in rec.attempts)
    assert all("AppTokenXYZ123" not in (a.channel + a.error) for a in rec.attempts)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match=r"max_attempts must be >= 1, got 0; jitter must be in \[0, 1\), got 1.5"):
        Dispatcher([], record=lambda a: None, now=lambda: 0.0, max_attempts=0, jitter=1.5)
