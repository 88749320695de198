"""InfluxV2Store (influxdb-client's SYNCHRONOUS WriteApi under our Batcher) against a fake /api/v2 (no real 2.x
server on these machines), without a disk spool; test_spool_influx_v2.py has the spooled path."""

from __future__ import annotations

import json
from typing import Any

from domain.levels import Level
from domain.site import Site
from store.influx_v2 import InfluxV2Store, flux_string, history_flux
from store.spool import line_ts
from store.writer import WriterSettings
from tests.store.conftest import T0, flow, state, wait_for
from tests.store.fake_influx2 import FakeInflux2


def open_store(fake: FakeInflux2, site: Site | None = None, **kw: Any) -> InfluxV2Store:
    args: dict[str, Any] = {"batch_size": 5000, "flush_interval_s": 60.0, "retry_initial_s": 0.05}
    args.update(kw)
    return InfluxV2Store(fake.url, "s3cret-token", "lujiazui", "crowdflow", site=site, writer=WriterSettings(**args))


def test_points_reach_api_v2_write_with_org_bucket_precision_and_token(
    fake: FakeInflux2, mini_site: Site
) -> None:
    store = open_store(fake, mini_site)
    states = [state("seg-1", T0 + i, 100.0 + i, level=Level.II) for i in range(300)]
    store.write_states(states)
    store.write_readings([flow("seg1-west", "seg-1", T0 + i, seq=i) for i in range(200)])
    assert fake.writes() == []  # batched: nothing goes out before the interval, the size or close()
    store.close()
    store.close()  # idempotent
    assert store.stats.points_written == 500 and store.stats.points_failed == 0 and store.pending == 0
    writes = fake.writes()
    assert writes, "close() must send what is buffered"
    for w in writes:
        assert w.params == {"org": "lujiazui", "bucket": "crowdflow", "precision": "ns"}
        assert w.headers["authorization"] == "Token s3cret-token"
        assert w.headers["content-type"].startswith("text/plain")
    lines = fake.lines()
    assert len(lines) == 500
    assert lines[0] == (
        "zone_state,grid=riverside,kind=riverside_segment,zone=seg-1 occupancy=100.0,share=0.1,density=0.2,"
        "inflow_per_min=10.0,outflow_per_min=8.0,level=3i,healthy=true,arrivals_today=300i 1700000000000000000"
    )
    assert (
        sum(ln.startswith("sensor_reading,grid=riverside,kind=flow,sensor=seg1-west") for ln in lines) == 200
    )


def test_batches_go_out_by_size_and_interval(fake: FakeInflux2) -> None:
    store = open_store(fake, batch_size=100, flush_interval_s=0.1)
    store.write_states([state("z", T0 + i) for i in range(250)])
    wait_for(lambda: store.stats.points_written == 250)  # 100 + 100 by size, 50 by interval, before close
    assert store.stats.batches == 3
    store.close()


def test_5xx_is_retried_and_then_written(fake: FakeInflux2) -> None:
    fake.write_script = [(503, "overloaded"), (500, "internal")]
    store = open_store(fake, batch_size=10)
    store.write_states([state("z", T0 + i) for i in range(10)])
    wait_for(lambda: store.stats.points_written == 10)
    store.close()
    assert store.stats.retries == 2 and store.stats.points_failed == 0
    assert len(fake.writes()) == 3 and len(fake.lines()) == 10
    assert "InfluxDB write failed (500)" in store.stats.last_error


def test_4xx_is_counted_as_failed_with_the_message(fake: FakeInflux2) -> None:
    fake.write_script = [(400, 'unable to parse: invalid field format "bad"')]
    store = open_store(fake, batch_size=5)
    store.write_states([state("z", T0 + i) for i in range(5)])  # refused
    wait_for(lambda: store.stats.points_failed == 5)
    store.write_states([state("z", T0 + 10 + i) for i in range(5)])  # later ones still go through
    store.close()
    s = store.stats
    assert s.points_failed == 5 and s.points_written == 5 and s.retries == 0
    assert "unable to parse" in s.last_error and "400" in s.last_error


def test_partial_write_counts_only_the_dropped_points(fake: FakeInflux2) -> None:
    fake.write_script = [(422, "partial write: field type conflict: ... dropped=2")]
    store = open_store(fake, batch_size=5)
    store.write_states([state("z", T0 + i) for i in range(5)])
    store.close()
    assert store.stats.points_failed == 2 and store.stats.points_written == 3


def test_buffer_is_bounded_by_dropping_the_oldest_and_writes_after_close_are_counted(fake: FakeInflux2) -> None:
    store = open_store(fake, batch_size=100, max_queue=100)
    store.write_states([state("z", T0 + i) for i in range(150)])
    assert store.stats.queue_dropped == 50
    store.close()
    store.write_states([state("z", T0)])
    s = store.stats
    assert s.points_written == 100 and s.points_failed == 1 and "after close" in s.last_error
    assert [index(ln) for ln in fake.lines()] == list(range(50, 150))  # the newest kept, as the 1.x store does


def test_without_a_spool_an_outage_is_retried_in_memory_and_everything_arrives_in_order(fake: FakeInflux2) -> None:
    """The same writer as the 1.x store: a refused connection keeps the batch (and the ones behind it) in memory
    and retries it with a backoff; nothing is counted as failed, nothing arrives twice or out of order."""
    store = open_store(fake, batch_size=20, flush_interval_s=0.02, retry_initial_s=0.02, retry_max_s=0.1)
    store.write_states([state("z", T0 + i) for i in range(40)])
    wait_for(lambda: store.stats.points_written == 40)
    fake.stop()  # connection refused from now on
    store.write_states([state("z", T0 + i) for i in range(40, 100)])
    wait_for(lambda: store.stats.retries >= 2)
    assert "unreachable" in store.stats.last_error and store.stats.points_written == 40
    fake.start()
    store.write_states([state("z", T0 + i) for i in range(100, 120)])
    store.close()
    s = store.stats
    assert s.points_written == 120 and s.points_failed == 0 and s.queue_dropped == 0 and s.spooled == 0
    assert [index(ln) for ln in fake.lines()] == list(range(120))


def index(line: str) -> int:
    """The point's second after T0 (its index in these tests) from the line's timestamp."""
    ts = line_ts(line)
    assert ts is not None
    return round(ts / 1e9 - T0)


CSV = (
    "#datatype,string,long,dateTime:RFC3339,double,double,double,double,double,double,double,double\r\n"
    "#group,false,false,false,false,false,false,false,false,false,false,false\r\n"
    "#default,_result,,,,,,,,,,\r\n"
    ",result,table,_time,arrivals_today,density,expected_inflow_per_min,inflow_per_min,level,occupancy,"
    "outflow_per_min,share\r\n"
    ",,0,2023-11-14T22:14:00Z,,0.25,,10,0,125,8,0.125\r\n"  # written before the two new fields
    ",,0,2023-11-14T22:15:00Z,5400,0.37,9.5,10,3,185,8,0.185\r\n"
    "\r\n"
)


def test_history_sends_flux_and_reads_the_pivoted_rows(fake: FakeInflux2) -> None:
    fake.query_answer = CSV
    store = open_store(fake)
    rows = store.history('seg-"1"', T0, T0 + 600, every_s=60)
    store.close()
    assert rows == [
        {
            "ts": T0 + 40,
            "density": 0.25,
            "inflow_per_min": 10.0,
            "level": 0.0,
            "occupancy": 125.0,
            "outflow_per_min": 8.0,
            "share": 0.125,
        },
        {
            "ts": T0 + 100,
            "density": 0.37,
            "inflow_per_min": 10.0,
            "level": 3.0,
            "occupancy": 185.0,
            "outflow_per_min": 8.0,
            "share": 0.185,
            "expected_inflow_per_min": 9.5,
            "arrivals_today": 5400.0,
        },
    ]
    (q,) = [r for r in fake.requests if r.path == "/api/v2/query"]
    assert q.params == {"org": "lujiazui"} and q.headers["authorization"] == "Token s3cret-token"
    flux = json.loads(q.body)["query"]
    assert flux == history_flux("crowdflow", 'seg-"1"', T0, T0 + 600, 60)
    assert 'r.zone == "seg-\\"1\\""' in flux and "time(v: 1700000000000000000)" in flux
    # Means for the measured fields and the learned normal; maxima for the level and the day's arrivals.
    one_line = flux.replace("\n  ", " ")
    assert 'r._field == "expected_inflow_per_min") |> aggregateWindow(every: 60000ms, fn: mean' in one_line
    assert 'r._field == "level" or r._field == "arrivals_today") |> aggregateWindow(every: 60000ms, fn: max' in (
        one_line
    )


def test_flux_string_escapes_interpolation() -> None:
    assert flux_string('a"b\\c${x}') == '"a\\"b\\\\c\\${x}"'
