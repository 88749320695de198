"""InfluxV1Store against a real influxd 1.6 (started by the fixtures)."""

from __future__ import annotations

import urllib.request

from domain.levels import Level
from domain.site import Site
from store.base import HISTORY_FIELDS
from store.influx_v1 import InfluxV1Store
from store.writer import WriterSettings
from tests.servers import Server, influx_query
from tests.store.conftest import T0, flow, state, wait_for


def rows(url: str, db: str, q: str) -> list[dict[str, object]]:
    res = influx_query(url, db, q)
    out: list[dict[str, object]] = []
    for r in res["results"]:  # type: ignore[attr-defined]
        assert "error" not in r, r
        for s in r.get("series", []):
            out.extend(dict(zip(s["columns"], v, strict=True)) for v in s["values"])
    return out



def test_every_state_and_reading_arrives_with_tags_and_fields(
    shared_influxdb: Server, mini_site: Site
) -> None:
    url = shared_influxdb.url
    store = InfluxV1Store(url, "all_points", site=mini_site, writer=WriterSettings(batch_size=50, flush_interval_s=0.2))
    states = [state(z, T0 + i * 10, 100.0 + i, level=Level.IV) for i in range(40) for z in ("seg-1", "plaza")]
    readings = [flow("seg1-west", "seg-1", T0 + i * 10, inflow=i, outflow=1, seq=i) for i in range(30)]
    store.write_states(states)
    store.write_readings(readings)
    store.close()
    assert store.stats.points_written == 110 and store.stats.points_failed == 0
    assert store.stats.batches >= 3  # batch_size 50

    got = rows(url, "all_points", "SELECT * FROM zone_state WHERE zone = 'seg-1' ORDER BY time")
    assert len(got) == 40
    first = got[0]
    assert first["time"] == "2023-11-14T22:13:20Z"
    assert first["grid"] == "riverside" and first["kind"] == "riverside_segment"
    assert first["occupancy"] == 100.0 and first["share"] == 0.1 and first["level"] == 1
    assert first["healthy"] is True and first["inflow_per_min"] == 10.0
    assert len(rows(url, "all_points", "SELECT * FROM zone_state WHERE zone = 'plaza'")) == 40
    tag_keys = rows(url, "all_points", "SHOW TAG KEYS FROM zone_state")
    assert {r["tagKey"] for r in tag_keys} == {"grid", "kind", "zone"}  # counts are fields, not tags
    field_keys = {r["fieldKey"]: r["fieldType"] for r in rows(url, "all_points", "SHOW FIELD KEYS")}
    assert field_keys["level"] == "integer" and field_keys["occupancy"] == "float"
    assert field_keys["inflow"] == "integer"

    rd = rows(
        url,
        "all_points",
        "SELECT sum(inflow) AS i, count(outflow) AS n FROM sensor_reading "
        "WHERE sensor = 'seg1-west' AND kind = 'flow' AND grid = 'riverside'",
    )
    assert rd[0]["i"] == sum(range(30)) and rd[0]["n"] == 30


def test_close_writes_what_was_still_buffered(shared_influxdb: Server) -> None:
    writer = WriterSettings(batch_size=5000, flush_interval_s=60.0)
    store = InfluxV1Store(shared_influxdb.url, "buffered", writer=writer)
    store.write_states([state("z", T0 + i) for i in range(1234)])
    assert store.pending == 1234  # nothing sent yet: neither the size nor the interval was reached
    store.close()
    store.close()  # idempotent
    assert store.stats.points_written == 1234 and store.stats.batches == 1
    assert (
        rows(shared_influxdb.url, "buffered", "SELECT count(occupancy) FROM zone_state")[0]["count"] == 1234
    )
    store.write_states([state("z", T0)])  # after close: counted, not raised
    assert store.stats.points_failed == 1 and "after close" in store.stats.last_error


def test_server_down_mid_run_points_are_kept_and_written_when_it_returns(influxdb: Server) -> None:
    writer = WriterSettings(batch_size=100, flush_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.2)
    store = InfluxV1Store(influxdb.url, "outage", writer=writer)
    store.write_states([state("z", T0 + i) for i in range(50)])
    wait_for(lambda: store.stats.points_written == 50)
    influxdb.stop()
    store.write_states([state("z", T0 + 50 + i) for i in range(70)])
    wait_for(lambda: store.stats.retries >= 2)
    assert store.stats.points_written == 50 and store.stats.points_failed == 0
    assert "unreachable" in store.stats.last_error
    store.write_states([state("z", T0 + 120 + i) for i in range(30)])  # still accepted while down
    influxdb.start()
    wait_for(lambda: store.stats.points_written == 150)
    store.close()
    assert store.stats.points_failed == 0 and store.stats.queue_dropped == 0
    got = rows(influxdb.url, "outage", "SELECT count(occupancy) FROM zone_state")
    assert got[0]["count"] == 150


def test_full_buffer_drops_oldest_and_counts(influxdb: Server) -> None:
    writer = WriterSettings(batch_size=10, flush_interval_s=0.05, max_queue=100, retry_initial_s=0.05, retry_max_s=0.05)
    store = InfluxV1Store(influxdb.url, "dropping", writer=writer)
    influxdb.stop()
    store.write_states([state("z", T0 + i) for i in range(300)])
    assert store.pending <= 100 and store.stats.queue_dropped >= 190
    influxdb.start()
    store.close()
    s = store.stats
    assert s.points_written + s.queue_dropped == 300 and s.points_failed == 0
    newest = rows(influxdb.url, "dropping", "SELECT last(occupancy) FROM zone_state")[0]
    assert newest["time"] == "2023-11-14T22:18:19Z"  # the newest point survived, the oldest were dropped
    count = rows(influxdb.url, "dropping", "SELECT count(occupancy) FROM zone_state")[0]
    assert count["count"] == s.points_written


def test_field_type_conflict_is_counted_and_the_rest_is_written(shared_influxdb: Server) -> None:
    url = shared_influxdb.url
    influx_query(url, "", "CREATE DATABASE conflict")
    # Someone else's schema made `occupancy` a string in this database (types are per shard: same week).
    line = f'zone_state,zone=old occupancy="n/a" {int(T0) * 10**9}'.encode()
    req = urllib.request.Request(f"{url}/write?db=conflict", data=line, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
    store = InfluxV1Store(url, "conflict", writer=WriterSettings(batch_size=1000, flush_interval_s=60.0))
    store.write_states([state("z", T0 + i) for i in range(3)])
    store.write_readings([flow("c1", "z", T0 + i, seq=i) for i in range(5)])
    store.close()
    s = store.stats
    assert s.points_failed == 3 and s.points_written == 5 and s.batches == 1
    assert "field type conflict" in s.last_error
    assert rows(url, "conflict", "SELECT count(inflow) FROM sensor_reading")[0]["count"] == 5


def test_history_buckets_means_and_worst_level(shared_influxdb: Server) -> None:
    url = shared_influxdb.url
    store = InfluxV1Store(url, "hist", writer=WriterSettings(flush_interval_s=60.0))
    # two minutes of 10 s states; the second minute reaches level II once
    states = [state("seg-1", T0 + 40 + i * 10, 100.0 + i * 10) for i in range(12)]
    states[8].level = Level.II
    for i, s in enumerate(states):  # the learned normal is known from the third state on
        s.expected_inflow_per_min = None if i < 2 else 20.0 + i
    store.write_states(states)
    store.write_states([state("other", T0 + 50, 999.0)])
    store.close()
    # A third minute as written before the normal and the arrivals were stored.
    old = "zone_state,zone=seg-1 occupancy=50.0,share=0.05,density=0.1,inflow_per_min=1.0,outflow_per_min=2.0,"
    old += f"level=0i,healthy=true {int(T0 + 160) * 10**9}"
    req = urllib.request.Request(f"{url}/write?db=hist", data=old.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 204
    reopened = InfluxV1Store(url, "hist")
    try:
        h = reopened.history("seg-1", T0, T0 + 600, every_s=60)
        assert [r["ts"] for r in h] == [T0 + 40, T0 + 100, T0 + 160]  # aligned to the epoch minute (T0 is :20)
        assert [r["occupancy"] for r in h] == [125.0, 185.0, 50.0]
        assert [r["level"] for r in h] == [0.0, 3.0, 0.0]
        assert [r.get("expected_inflow_per_min") for r in h] == [23.5, 28.5, None]  # mean of those known
        assert [r.get("arrivals_today") for r in h] == [450.0, 630.0, None]  # the highest count in the minute
        assert set(h[0]) == {"ts", *HISTORY_FIELDS}
        assert set(h[2]) == {"ts", *HISTORY_FIELDS} - {"expected_inflow_per_min", "arrivals_today"}
        assert reopened.history("seg-1", T0 + 1000, T0 + 2000) == []
        assert reopened.history("no'such\\zone", T0, T0 + 600) == []  # quoted safely
    finally:
        reopened.close()


def test_a_dropped_database_is_created_again(shared_influxdb: Server) -> None:
    url = shared_influxdb.url
    store = InfluxV1Store(url, "dropped", writer=WriterSettings(flush_interval_s=0.02, retry_initial_s=0.02))
    influx_query(url, "", 'DROP DATABASE "dropped"')
    store.write_states([state("z", T0 + i) for i in range(7)])
    store.close()
    assert store.stats.points_written == 7 and store.stats.retries == 1
    assert rows(url, "dropped", "SELECT count(occupancy) FROM zone_state")[0]["count"] == 7
