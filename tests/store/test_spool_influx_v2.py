"""The disk spool through InfluxV2Store (influxdb-client's SYNCHRONOUS WriteApi under our Batcher) against the
fake /api/v2 of fake_influx2.py: 503 answers, the fake stopped (connection refused) and started again on the
same port, a 4xx during replay, the spool left on disk by close() and replayed by the next store.

What this does NOT show: how a real InfluxDB 2.x or 3.x server behaves while it starts up or after a crash
(there is none on the build machines); the fake accepts every well-formed write once it answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from store.factory import SPOOL_DIR, open_store
from store.influx_v2 import InfluxV2Store
from store.spool import line_ts
from store.writer import WriterSettings
from tests.store.conftest import T0, Feeder, points, wait_for
from tests.store.fake_influx2 import FakeInflux2


def received(fake: FakeInflux2) -> list[int]:
    """Indices of the points the fake accepted (204), in the order it received them."""
    out = []
    for ln in fake.lines():
        ts = line_ts(ln)
        assert ts is not None
        out.append(round(ts / 1e9 - T0))
    return out


def open_v2(fake: FakeInflux2, spool: Path, **kw: Any) -> InfluxV2Store:
    args: dict[str, Any] = {
        "batch_size": 50,
        "flush_interval_s": 0.05,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.3,
        "replay_rate": 20_000.0,
    }
    args.update(kw)
    writer = WriterSettings(**args)
    return InfluxV2Store(
        fake.url, "s3cret-token", "lujiazui", "crowdflow", timeout_s=2.0, spool_dir=spool, writer=writer
    )


def test_503s_go_to_the_spool_and_are_replayed_in_order(fake: FakeInflux2, tmp_path: Path) -> None:
    fake.write_script = [(503, "service unavailable")] * 4
    store = open_v2(fake, tmp_path / "spool")
    for i in range(0, 500, 25):
        store.write_states(points(i, 25))
    wait_for(lambda: store.stats.points_written == 500)
    store.close()
    s = store.stats
    assert received(fake) == list(range(500))
    assert s.retries == 4 and s.spooled > 0 and s.replayed == s.spooled and s.points_failed == 0
    for w in fake.writes():
        assert w.params == {"org": "lujiazui", "bucket": "crowdflow", "precision": "ns"}
        assert w.headers["authorization"] == "Token s3cret-token"


def test_server_gone_during_continuous_writes_then_back_on_the_same_port(fake: FakeInflux2, tmp_path: Path) -> None:
    store = open_v2(fake, tmp_path / "spool")
    with Feeder(store) as feed:
        wait_for(lambda: store.stats.points_written >= 500)
        fake.stop()  # connection refused from now on
        at_stop = feed.written
        wait_for(lambda: feed.written - at_stop >= 2000)
        wait_for(lambda: store.stats.spooled >= feed.written - at_stop and store.stats.retries >= 2)
        assert "unreachable" in store.stats.last_error
        fake.start()
        at_start = feed.written
        wait_for(lambda: store.stats.spool_pending == 0 and store.stats.points_written >= at_start + 500)
    store.close()
    s = store.stats
    assert received(fake) == list(range(feed.written))  # each once, in order
    assert s.points_written == feed.written and s.points_failed == 0 and s.queue_dropped == 0
    assert s.replayed == s.spooled > 0 and s.spool_dropped == 0


def test_a_4xx_during_replay_is_counted_and_the_replay_moves_on(fake: FakeInflux2, tmp_path: Path) -> None:
    fake.write_script = [(503, "unavailable"), (400, 'unable to parse: invalid field format "bad"')]
    store = open_v2(fake, tmp_path / "spool", batch_size=10, flush_interval_s=10.0)
    store.write_states(points(0, 30))  # three batches: the first fails (503), is spooled, refused in replay
    wait_for(lambda: store.stats.points_written == 20)
    store.close()
    s = store.stats
    assert s.points_failed == 10 and "400" in s.last_error and "unable to parse" in s.last_error
    assert received(fake) == list(range(10, 30))


def test_close_without_a_server_keeps_the_spool_for_the_next_store(fake: FakeInflux2, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    store = open_v2(fake, spool)
    fake.stop()
    store.write_states(points(0, 120))
    store.close()
    assert store.stats.points_failed == 0 and store.stats.spool_pending == 120
    fake.start()
    again = open_v2(fake, spool)
    again.write_states(points(120, 30))
    wait_for(lambda: again.stats.points_written == 150)
    again.close()
    # what was on disk, plus whatever new arrived while it was being replayed (which queues behind it)
    assert received(fake) == list(range(150)) and again.stats.replayed == 120 + again.stats.spooled


def test_open_store_puts_the_spool_beside_the_embedded_file(fake: FakeInflux2, tmp_path: Path) -> None:
    store = open_store(fake.url, token="t", org="o", bucket="b", embedded_path=tmp_path / "history.sqlite")
    fake.stop()
    store.write_states(points(0, 3))
    store.close()
    assert store.stats.spool_pending == 3 and store.stats.points_failed == 0
    (spool,) = (tmp_path / SPOOL_DIR).iterdir()  # one destination's directory (store/spool_location.py)
    assert spool.name.startswith("v2-b-127.0.0.1_") and list(spool.glob("*.seg"))
    fake.start()
    memory_only = open_store(fake.url, token="t", org="o", bucket="b", api="v2")  # no data directory given
    memory_only.write_states(points(3, 1))
    memory_only.close()
    assert memory_only.stats.points_written == 1 and memory_only.stats.spooled == 0
