"""Batcher with a scripted sender, and the 1.x store's mapping of HTTP answers to retry / fail."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from store.base import StoreStats
from store.batcher import Batcher, Permanent, Transient
from store.influx_v1 import InfluxV1Store
from store.writer import WriterSettings
from tests.servers import Server
from tests.store.conftest import T0, state


class Script:
    """A sender that raises the scripted errors in turn, then records what it 'writes'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[list[str]] = []
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, body: bytes) -> None:
        with self.lock:
            self.calls += 1
            if self.errors:
                raise self.errors.pop(0)
            self.sent.append(body.decode().split("\n"))


def test_transient_failures_are_retried_keeping_batch_and_order() -> None:
    send = Script(Transient("refused"), Transient("503"))
    stats = StoreStats()
    b = Batcher(send, stats, batch_size=3, flush_interval_s=0.01, retry_initial_s=0.01)
    b.put(["a", "b", "c", "d"])
    b.close()
    assert send.sent == [["a", "b", "c"], ["d"]]
    assert (
        stats.retries == 2 and stats.points_written == 4 and stats.batches == 2 and stats.points_failed == 0
    )


def test_permanent_failure_is_counted_and_the_writer_moves_on() -> None:
    send = Script(Permanent("400 field type conflict", failed=1))
    stats = StoreStats()
    b = Batcher(send, stats, batch_size=2, flush_interval_s=0.01)
    b.put(["a", "b", "c"])
    b.close()
    assert stats.points_failed == 1 and stats.points_written == 2 and stats.retries == 0
    assert stats.last_error == "400 field type conflict"


def test_a_bug_in_the_sender_does_not_kill_the_writer() -> None:
    send = Script(RuntimeError("boom"))
    stats = StoreStats()
    b = Batcher(send, stats, batch_size=1, flush_interval_s=0.01)
    b.put(["a", "b"])
    b.close()
    assert stats.points_failed == 1 and stats.points_written == 1 and "RuntimeError: boom" in stats.last_error


def test_close_gives_up_after_its_timeout_and_counts_what_is_left() -> None:
    send = Script(*[Transient("down")] * 10_000)
    stats = StoreStats()
    b = Batcher(send, stats, batch_size=2, flush_interval_s=0.01, retry_initial_s=0.01, close_timeout_s=0.3)
    b.put(["a", "b", "c", "d", "e"])
    t = time.monotonic()
    b.close()
    assert time.monotonic() - t < 1.5
    assert stats.points_failed == 5 and stats.points_written == 0
    assert "close() timed out" in stats.last_error


def test_put_never_waits_for_a_slow_server() -> None:
    gate = threading.Event()
    stats = StoreStats()
    b = Batcher(
        lambda body: (gate.wait(5), None)[1], stats, batch_size=10, flush_interval_s=0.01, max_queue=50
    )
    t = time.perf_counter()
    for i in range(100):
        b.put([f"p{i}"] * 10)
    assert time.perf_counter() - t < 0.1
    assert stats.queue_dropped >= 940 and b.pending <= 50
    gate.set()
    b.close()
    assert stats.points_written + stats.queue_dropped == 1000


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Batcher(Script(), StoreStats(), batch_size=10, max_queue=5)


@pytest.mark.parametrize(
    ("status", "retried"), [(500, True), (503, True), (429, True), (400, False), (401, False), (413, False)]
)
def test_v1_http_answers_map_to_retry_or_fail(shared_influxdb: Server, status: int, retried: bool) -> None:
    answers = [status]

    def handler(request: httpx.Request) -> httpx.Response:
        code = answers.pop(0) if answers else 204
        return httpx.Response(code, json={"error": f"status {code}"} if code != 204 else None)

    writer = WriterSettings(flush_interval_s=0.01, retry_initial_s=0.01)
    store = InfluxV1Store(shared_influxdb.url, "mapping", writer=writer)
    store._write_http = httpx.Client(base_url=store.url, transport=httpx.MockTransport(handler))
    store.write_states([state("z", T0)])
    store.close()
    s = store.stats
    if retried:
        assert (s.retries, s.points_written, s.points_failed) == (1, 1, 0)
    else:
        assert (s.retries, s.points_written, s.points_failed) == (0, 0, 1)
        assert f"({status})" in s.last_error
