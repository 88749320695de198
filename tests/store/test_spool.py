"""The disk spool on its own (segments, cursor, bound, torn records, a real SIGKILL) and the Batcher's spooled
path with a scripted sender (order, high water, a failing disk, close while down)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from store.base import StoreConfigError, StoreStats
from store.batcher import Batcher, Transient
from store.spool import HEADER_BYTES, Spool, encode_record, line_ts
from tests.store.conftest import sigkill, wait_for

T0_NS = 1_700_000_000 * 10**9
REPO = Path(__file__).resolve().parents[2]


def lines(start: int, n: int) -> list[str]:
    """n line-protocol lines, one second apart from T0 + start s; the field repeats the index."""
    return [f"zone_state,zone=z occupancy={i}i {T0_NS + i * 10**9}" for i in range(start, start + n)]


def index(line: str) -> int:
    ts = line_ts(line)
    assert ts is not None
    return (ts - T0_NS) // 10**9


def drain(spool: Spool) -> list[list[str]]:
    out: list[list[str]] = []
    while (rec := spool.peek()) is not None:
        out.append(rec.lines)
        spool.consume(rec)
    return out


def test_records_come_back_in_order_across_segments_and_a_reopen(tmp_path: Path) -> None:
    stats = StoreStats()
    spool = Spool(tmp_path, stats, max_bytes=1 << 20, segment_bytes=4096)
    for b in range(50):
        assert spool.append(lines(b * 10, 10)) is None
    assert len(list(tmp_path.glob("*.seg"))) > 3  # rolled over
    assert stats.spooled == 500 and stats.spool_pending == 500 and stats.spool_bytes == spool.bytes
    assert stats.spool_oldest_ts == T0_NS / 1e9
    for _ in range(23):  # replay part of it, then "restart"
        rec = spool.peek()
        assert rec is not None
        spool.consume(rec)
    assert stats.spool_pending == 270 and stats.spool_oldest_ts == T0_NS / 1e9 + 230
    spool.close()

    again = StoreStats()
    reopened = Spool(tmp_path, again, max_bytes=1 << 20, segment_bytes=4096)
    assert again.spool_pending == 270 and again.spool_torn == 0
    reopened.append(lines(500, 10))  # appends after a restart go behind what was left
    got = [index(ln) for rec in drain(reopened) for ln in rec]
    assert got == list(range(230, 510))
    assert again.spool_pending == 0 and again.spool_bytes == 0 and again.spool_oldest_ts == 0.0
    assert list(tmp_path.glob("*.seg")) == []  # replayed segments are deleted
    reopened.close()


def test_a_torn_tail_is_cut_off_and_counted_and_the_records_before_it_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, StoreStats(), max_bytes=1 << 20)
    for b in range(3):
        spool.append(lines(b * 10, 10))
    spool.close()
    (seg,) = tmp_path.glob("*.seg")
    good = seg.stat().st_size
    with seg.open("ab") as f:  # what a kill in the middle of write() would leave
        f.write(encode_record(lines(30, 10))[:-7])
    stats = StoreStats()
    reopened = Spool(tmp_path, stats, max_bytes=1 << 20)
    assert stats.spool_torn == 1 and stats.spool_pending == 30
    assert seg.stat().st_size == good  # cut back, so later appends are readable
    reopened.append(lines(40, 5))
    got = [index(ln) for rec in drain(reopened) for ln in rec]
    assert got == [*range(30), *range(40, 45)]
    reopened.close()


def test_a_torn_header_is_caught_too(tmp_path: Path) -> None:
    spool = Spool(tmp_path, StoreStats(), max_bytes=1 << 20)
    spool.append(lines(0, 10))
    spool.close()
    (seg,) = tmp_path.glob("*.seg")
    with seg.open("ab") as f:
        f.write(encode_record(lines(10, 10))[: HEADER_BYTES - 3])
    stats = StoreStats()
    reopened = Spool(tmp_path, stats, max_bytes=1 << 20)
    assert stats.spool_torn == 1 and [len(r) for r in drain(reopened)] == [10]
    reopened.close()


def test_a_corrupt_record_in_an_older_segment_is_counted_when_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path, StoreStats(), max_bytes=1 << 20, segment_bytes=4096)
    for b in range(40):
        spool.append(lines(b * 10, 10))
    spool.close()
    first = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[HEADER_BYTES + 5] ^= 0xFF  # a flipped byte in the first record's payload
    first.write_bytes(bytes(data))
    stats = StoreStats()
    reopened = Spool(tmp_path, stats, max_bytes=1 << 20, segment_bytes=4096)
    assert stats.spool_torn == 0  # only the newest segment is checked in full at open
    got = [index(ln) for rec in drain(reopened) for ln in rec]
    assert stats.spool_torn == 1
    assert got and got == sorted(got) and got[-1] == 399 and 0 not in got  # the rest of that segment skipped
    reopened.close()


def test_the_bound_drops_the_oldest_segments_and_counts_exactly_what_it_dropped(tmp_path: Path) -> None:
    stats = StoreStats()
    spool = Spool(tmp_path, stats, max_bytes=20_000, segment_bytes=4096)
    dropped_calls = 0
    for b in range(100):
        if spool.append(lines(b * 10, 10)) is not None:
            dropped_calls += 1
        assert spool.bytes <= 20_000
    assert dropped_calls > 0 and stats.spool_dropped > 0
    assert stats.spooled == 1000 and stats.spooled == stats.spool_dropped + stats.spool_pending
    got = [index(ln) for rec in drain(spool) for ln in rec]
    d = stats.spool_dropped
    assert got == list(range(d, 1000))  # the oldest went, all of them and only them
    assert (stats.spool_dropped_from_ts, stats.spool_dropped_until_ts) == (T0_NS / 1e9, T0_NS / 1e9 + d - 1)
    spool.close()


def test_a_batch_larger_than_the_whole_bound_is_itself_dropped_and_counted(tmp_path: Path) -> None:
    stats = StoreStats()
    spool = Spool(tmp_path, stats, max_bytes=8192, segment_bytes=4096)
    spool.append(lines(0, 5))
    dropped = spool.append(lines(5, 1000))
    assert dropped is not None and dropped.lines == 1000 and stats.spool_dropped == 1000
    assert [index(ln) for rec in drain(spool) for ln in rec] == list(range(5))
    spool.close()


def test_one_directory_one_process(tmp_path: Path) -> None:
    spool = Spool(tmp_path, StoreStats())
    with pytest.raises(StoreConfigError, match="in use by another process"):
        Spool(tmp_path, StoreStats())
    spool.close()
    Spool(tmp_path, StoreStats()).close()  # free again once closed


CHILD = """
import sys, time
from pathlib import Path
from store.base import StoreStats
from store.spool import Spool
spool = Spool(Path(sys.argv[1]), StoreStats(), max_bytes=1 << 30, segment_bytes=64 * 1024)
i = 0
while True:
    n = 1 + i % 97  # uneven record sizes
    spool.append([f"zone_state,zone=z occupancy={j}i {1_700_000_000 * 10**9 + j * 10**9}" for j in range(i, i + n)])
    i += n
"""


def test_sigkill_while_appending_loses_no_complete_record(tmp_path: Path) -> None:
    """A real SIGKILL of a process appending as fast as it can: what is on disk reads back gap-free."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO)
    try:
        wait_for(lambda: len(list(tmp_path.glob("*.seg"))) >= 4 or proc.poll() is not None)
        assert proc.poll() is None, "the appending child died by itself"
    finally:
        sigkill(proc)  # mid-append
    stats = StoreStats()
    spool = Spool(tmp_path, stats, max_bytes=1 << 30, segment_bytes=64 * 1024)
    got = [index(ln) for rec in drain(spool) for ln in rec]
    print(f"sigkill: {len(got)} lines read back, torn records {stats.spool_torn}")
    assert stats.spool_torn <= 1
    assert got == list(range(len(got))) and len(got) > 1000  # from the first, none missing, none twice
    spool.close()


# -- the Batcher with a spool, against a scripted sender -------------------------------------------------


class Server:
    """A sender that fails transiently while `up` is clear, else records each body's lines."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.up = threading.Event()
        self.up.set()
        self.delay_s = delay_s
        self.sent: list[list[str]] = []

    def __call__(self, body: bytes) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if not self.up.is_set():
            raise Transient("connection refused")
        self.sent.append(body.decode().split("\n"))

    def indices(self) -> list[int]:
        return [index(ln) for body in self.sent for ln in body]


def spooled_batcher(send: Server, tmp_path: Path, **kw: object) -> tuple[Batcher, StoreStats]:
    stats = StoreStats()
    max_bytes = int(kw.pop("max_bytes", 1 << 24))  # type: ignore[call-overload]
    segment_bytes = kw.pop("segment_bytes", None)
    spool = Spool(tmp_path / "spool", stats, max_bytes=max_bytes, segment_bytes=segment_bytes)  # type: ignore[arg-type]
    args: dict[str, object] = {
        "batch_size": 20,
        "flush_interval_s": 0.01,
        "retry_initial_s": 0.01,
        "retry_max_s": 0.05,
        "replay_rate": 1e6,
    }
    args.update(kw)
    return Batcher(send, stats, spool=spool, **args), stats  # type: ignore[arg-type]


def test_an_outage_goes_to_the_spool_and_comes_back_in_order_before_newer_points(tmp_path: Path) -> None:
    send = Server()
    b, stats = spooled_batcher(send, tmp_path)
    b.put(lines(0, 100))
    wait_for(lambda: stats.points_written == 100)
    send.up.clear()
    for i in range(100, 600, 25):
        b.put(lines(i, 25))
    wait_for(lambda: stats.spooled == 500 and stats.retries >= 2)
    assert stats.points_written == 100 and stats.spool_pending == 500
    send.up.set()
    b.put(lines(600, 100))  # newer points wait behind the spool
    wait_for(lambda: stats.points_written == 700)
    b.close()
    assert send.indices() == list(range(700))  # each once, in the order they came
    assert stats.replayed >= 500 and stats.spool_pending == 0 and stats.points_failed == 0
    assert stats.queue_dropped == 0 and stats.spool_dropped == 0
    assert max(len(body) for body in send.sent) <= 20  # replayed a record (<= batch_size lines) at a time


def test_past_high_water_memory_spills_to_the_spool(tmp_path: Path) -> None:
    send = Server(delay_s=0.02)  # slower than the caller
    b, stats = spooled_batcher(send, tmp_path, high_water=50, max_queue=100_000)
    for i in range(0, 2000, 10):
        b.put(lines(i, 10))
    wait_for(lambda: stats.points_written == 2000, timeout=60)
    b.close()
    assert stats.spooled > 0 and stats.queue_dropped == 0
    assert send.indices() == list(range(2000))


def test_a_disk_that_refuses_writes_keeps_the_points_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    send = Server()
    send.up.clear()
    b, stats = spooled_batcher(send, tmp_path)
    assert b._spool is not None
    real = b._spool.append
    refusals = [0]

    def full(batch: list[str]) -> object:
        if refusals[0] < 5:
            refusals[0] += 1
            raise OSError(28, "No space left on device")
        return real(batch)

    monkeypatch.setattr(b._spool, "append", full)
    b.put(lines(0, 60))
    wait_for(lambda: refusals[0] == 5 and stats.spooled == 60)
    send.up.set()
    wait_for(lambda: stats.points_written == 60)
    b.close()
    assert send.indices() == list(range(60)) and stats.points_failed == 0 and stats.queue_dropped == 0


def test_close_while_the_server_is_down_leaves_the_points_on_disk(tmp_path: Path) -> None:
    send = Server()
    send.up.clear()
    b, stats = spooled_batcher(send, tmp_path, close_timeout_s=30.0, flush_interval_s=10.0)
    b.put(lines(0, 10))  # below batch size, so it is still in memory at close
    b.put(lines(10, 30))
    b.close()
    assert stats.points_failed == 0 and stats.points_written == 0
    assert stats.spooled == 40 and stats.spool_pending == 40
    again = StoreStats()
    spool = Spool(tmp_path / "spool", again)
    assert [index(ln) for rec in drain(spool) for ln in rec] == list(range(40))
    spool.close()


def test_an_outage_is_logged_once_not_per_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="store")
    send = Server()
    send.up.clear()
    b, stats = spooled_batcher(send, tmp_path, max_bytes=20_000, segment_bytes=4096)
    for i in range(0, 2000, 20):
        b.put(lines(i, 20))
    wait_for(lambda: stats.spooled == 2000 and stats.retries >= 5)
    assert stats.spool_dropped > 100  # many drops, in many appends
    send.up.set()
    wait_for(lambda: stats.spool_pending == 0)
    b.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("spooling points" in m for m in messages) == 1
    assert sum("reached its bound" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1
    drained = [m for m in messages if "spool drained" in m]
    assert len(drained) == 1 and f"{stats.spool_dropped} dropped" in drained[0]
    assert len(messages) == 4, messages
    assert send.indices() == list(range(stats.spool_dropped, 2000))


def test_close_with_neither_server_nor_disk_counts_what_is_left_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = Server()
    send.up.clear()
    b, stats = spooled_batcher(send, tmp_path)
    assert b._spool is not None

    def full(batch: list[str]) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(b._spool, "append", full)
    b.put(lines(0, 60))
    wait_for(lambda: stats.retries >= 2)
    b.close()
    assert stats.points_failed == 60 and stats.points_written == 0 and stats.spooled == 0
    assert "No space left on device" in stats.last_error


def test_replay_goes_one_record_per_request_under_the_rate_bound(tmp_path: Path) -> None:
    """Behaviour asserted: each request is one spooled record, oldest first. The pace is printed only
    (a shared machine can only slow it down)."""
    send = Server()
    send.up.clear()
    b, stats = spooled_batcher(send, tmp_path, replay_rate=4000.0, retry_max_s=0.01)
    for i in range(0, 2000, 20):
        b.put(lines(i, 20))
    wait_for(lambda: stats.spooled == 2000)
    t = time.monotonic()
    send.up.set()
    wait_for(lambda: stats.spool_pending == 0)
    took = time.monotonic() - t
    b.close()
    print(f"replay: 2000 lines at replay_rate 4000/s took {took:.2f} s ({2000 / took:.0f} lines/s)")
    assert send.indices() == list(range(2000))
    assert all(len(body) <= 20 for body in send.sent) and len(send.sent) >= 100


def test_the_spool_drains_while_ingest_goes_on_against_a_server_with_a_round_trip(tmp_path: Path) -> None:
    """Points keep arriving during the replay, faster than one request's round trip: what arrives meanwhile
    must not be spooled as a tiny record per request (the spool would then only ever shrink by the records
    the server took, as fast as new ones were made, and never drain)."""
    send = Server(delay_s=0.005)
    b, stats = spooled_batcher(send, tmp_path, batch_size=50, flush_interval_s=0.05, max_queue=100_000)
    stop, fed = threading.Event(), [0]

    def feed() -> None:
        while not stop.is_set():
            b.put(lines(fed[0], 5))
            fed[0] += 5
            time.sleep(0.002)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        wait_for(lambda: stats.points_written >= 200)
        send.up.clear()
        wait_for(lambda: stats.spooled >= 1000 and stats.retries >= 2)
        send.up.set()
        wait_for(lambda: stats.spool_pending == 0 and stats.replayed == stats.spooled)
    finally:
        stop.set()
        feeder.join()
    b.close()
    assert send.indices() == list(range(fed[0]))  # each once, in order
    assert stats.points_failed == 0 and stats.queue_dropped == 0
