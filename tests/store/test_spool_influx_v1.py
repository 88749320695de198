"""The disk spool through InfluxV1Store against a real influxd 1.6, killed (SIGKILL) and restarted on the same
port and data directory by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from store.base import StoreStats, StoreUnreachableError
from store.factory import SPOOL_DIR, open_store
from store.influx_v1 import InfluxV1Store
from store.influx_v2 import InfluxV2Store
from store.spool import Spool, encode_record, line_ts
from store.writer import WriterSettings
from tests.servers import Server, influx_query
from tests.store.conftest import T0, Feeder, kill_server, points, restart_influxdb, sigkill, wait_for

REPO = Path(__file__).resolve().parents[2]


class SpiedV1(InfluxV1Store):
    """The real store, noting the point indices of every batch the server accepted, in the order sent."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.sent: list[list[int]] = []
        super().__init__(*args, **kw)

    def _send(self, body: bytes) -> None:
        super()._send(body)
        self.sent.append([index(ln) for ln in body.decode().split("\n")])

    def indices(self) -> list[int]:
        return [i for batch in self.sent for i in batch]


def index(line: str) -> int:
    ts = line_ts(line)
    assert ts is not None
    return round(ts / 1e9 - T0)


def stored(url: str, db: str) -> list[int]:
    """The indices of the points in the database, by time (each time at most once, as InfluxDB keeps it)."""
    res = influx_query(url, db, "SELECT occupancy FROM zone_state WHERE zone = 'z'")
    out: list[int] = []
    for r in res["results"]:  # type: ignore[attr-defined]
        assert "error" not in r, r
        for s in r.get("series", []):
            for t, occ in s["values"]:
                i = round(_epoch(t) - T0)
                assert occ == float(i), (t, occ)  # the point at that time is the point written for it
                out.append(i)
    return out


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def open_v1(url: str, db: str, spool: Path, **kw: Any) -> SpiedV1:
    args: dict[str, Any] = {
        "batch_size": 200,
        "flush_interval_s": 0.05,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
        "replay_rate": 20_000.0,
    }
    args.update(kw)
    return SpiedV1(url, db, timeout_s=2.0, spool_dir=spool, writer=WriterSettings(**args))


def test_influxd_killed_during_continuous_writes_every_point_arrives_in_order_once(
    influxdb: Server, tmp_path: Path
) -> None:
    store = open_v1(influxdb.url, "outage", tmp_path / "spool")
    with Feeder(store) as feed:
        wait_for(lambda: store.stats.points_written >= 1000)
        kill_server(influxdb)
        at_kill = feed.written
        wait_for(lambda: feed.written - at_kill >= 5000)  # ingest carries on while the server is dead
        during = feed.written - at_kill
        wait_for(lambda: store.stats.spooled >= during and store.stats.retries >= 3)  # all of it on disk
        assert store.stats.spool_pending > 0 and store.stats.spool_oldest_ts > 0
        restart_influxdb(influxdb)
        at_restart = feed.written
        wait_for(lambda: store.stats.spool_pending == 0 and store.stats.points_written >= at_restart)
        wait_for(lambda: store.stats.points_written >= at_restart + 1000)  # back to direct writes
    store.close()
    total = feed.written
    s = store.stats
    print(
        f"outage: {total} points, {during} written by ingest while influxd was down, spooled {s.spooled}, "
        f"replayed {s.replayed}, retries {s.retries}, slowest put {feed.slowest * 1000:.2f} ms"
    )
    assert s.points_written == total and s.points_failed == 0
    assert s.queue_dropped == 0 and s.spool_dropped == 0 and s.spool_torn == 0
    assert s.spool_pending == 0 and s.spool_bytes == 0 and s.replayed == s.spooled
    assert store.indices() == list(range(total))  # sent in order, each point once
    assert stored(influxdb.url, "outage") == list(range(total))  # all of them in the database


def test_a_tiny_spool_drops_the_oldest_and_counts_exactly_what_it_dropped(influxdb: Server, tmp_path: Path) -> None:
    store = open_v1(
        influxdb.url, "bounded", tmp_path / "spool", batch_size=20, spool_max_bytes=40_000, spool_segment_bytes=8192
    )
    kill_server(influxdb)
    for i in range(0, 3000, 20):
        store.write_states(points(i, 20))
    wait_for(lambda: store.stats.spooled == 3000)
    s = store.stats
    dropped = s.spool_dropped
    assert 0 < dropped < 3000 and s.spool_pending == 3000 - dropped and s.spool_bytes <= 40_000
    assert (s.spool_dropped_from_ts, s.spool_dropped_until_ts) == (T0, T0 + dropped - 1)
    restart_influxdb(influxdb)
    wait_for(lambda: store.stats.spool_pending == 0)
    store.close()
    print(f"bound: 40,000 bytes kept {3000 - dropped} of 3000 points, dropped the oldest {dropped}")
    assert s.points_written == 3000 - dropped and s.points_failed == 0 and s.queue_dropped == 0
    assert stored(influxdb.url, "bounded") == list(range(dropped, 3000))  # the newest survived, in full


def test_the_spool_survives_a_store_restart_and_is_replayed_before_newer_points(
    influxdb: Server, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    store = open_v1(influxdb.url, "restart", spool)
    store.write_states(points(0, 50))
    wait_for(lambda: store.stats.points_written == 50)
    kill_server(influxdb)
    store.write_states(points(50, 200))
    wait_for(lambda: store.stats.spooled == 200)
    store.close()  # no server: the points stay on disk, nothing counted as failed
    assert store.stats.points_failed == 0 and store.stats.spool_pending == 200
    assert list(spool.glob("*.seg"))

    restart_influxdb(influxdb)
    again = open_v1(influxdb.url, "restart", spool)
    again.write_states(points(250, 50))
    wait_for(lambda: again.stats.points_written == 250)
    again.close()
    # what was on disk, plus whatever new arrived while it was being replayed (which queues behind it)
    assert again.stats.replayed == 200 + again.stats.spooled and again.stats.spool_pending == 0
    assert again.indices() == list(range(50, 300))  # the spooled ones first, in order, then the new ones
    assert stored(influxdb.url, "restart") == list(range(300))


def test_a_torn_record_left_by_a_crash_is_skipped_and_counted_the_rest_replayed(
    influxdb: Server, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    store = open_v1(influxdb.url, "torn", spool, batch_size=10)
    kill_server(influxdb)
    store.write_states(points(0, 100))
    wait_for(lambda: store.stats.spooled == 100)
    store.close()
    newest = sorted(spool.glob("*.seg"))[-1]
    half = encode_record([f"zone_state,zone=z occupancy={i}.0 {int(T0 + i) * 10**9}" for i in range(100, 110)])
    with newest.open("ab") as f:  # what SIGKILL in the middle of an append would leave
        f.write(half[: len(half) // 2])

    restart_influxdb(influxdb)
    again = open_v1(influxdb.url, "torn", spool)
    assert again.stats.spool_torn == 1  # found when the spool was opened, before any replay
    wait_for(lambda: again.stats.spool_pending == 0)
    again.close()
    assert again.stats.replayed == 100 and again.stats.points_failed == 0
    assert stored(influxdb.url, "torn") == list(range(100))


def test_open_store_spools_a_v1_server_beside_the_embedded_file(influxdb: Server, tmp_path: Path) -> None:
    store = open_store(influxdb.url, database="factory_spool", embedded_path=tmp_path / "history.sqlite")
    assert isinstance(store, InfluxV1Store)
    kill_server(influxdb)
    store.write_states(points(0, 7))
    store.close()
    assert store.stats.spool_pending == 7 and store.stats.points_failed == 0
    (spool,) = (tmp_path / SPOOL_DIR).iterdir()  # one destination's directory (store/spool_location.py)
    assert spool.name.startswith("v1-factory_spool-127.0.0.1_") and list(spool.glob("*.seg"))


WRITER = """
import sys, time
from pathlib import Path
from store.influx_v1 import InfluxV1Store
from store.influx_v2 import InfluxV2Store
from store.writer import WriterSettings
from tests.store.conftest import T0, state
writer = WriterSettings(batch_size=50, flush_interval_s=0.02, retry_initial_s=0.05, retry_max_s=0.2)
store = InfluxV1Store(sys.argv[1], "sigkill", timeout_s=2.0, spool_dir=Path(sys.argv[2]), writer=writer)
i = 0
while True:
    store.write_states([state("z", T0 + j, float(j)) for j in range(i, i + 10)])
    i += 10
    print(i, store.stats.points_written, store.stats.spooled, flush=True)
    time.sleep(0.005)
"""


def test_a_store_process_killed_while_spooling_replays_its_spool_after_a_restart(
    influxdb: Server, tmp_path: Path
) -> None:
    """The service's case: influxd dies, then the process writing to it is SIGKILLed mid-spool; the next
    process replays what reached the disk, a gap-free run from the first point."""
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, influxdb.url, str(spool)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    try:
        handed = written = spooled = 0
        while written < 300:
            handed, written, spooled = map(int, child.stdout.readline().split())
        kill_server(influxdb)
        while spooled < 1000:
            handed, written, spooled = map(int, child.stdout.readline().split())
    finally:
        sigkill(child)  # mid-spool, as a crash or the OOM killer would
    restart_influxdb(influxdb)
    again = open_v1(influxdb.url, "sigkill", spool)
    wait_for(lambda: again.stats.spool_pending == 0)
    again.close()
    got = stored(influxdb.url, "sigkill")
    print(
        f"store SIGKILLed: {handed} points handed over by its last report, {written} written and {spooled} "
        f"spooled by then; {len(got)} in the database after the replay, torn records {again.stats.spool_torn}"
    )
    assert got == list(range(len(got)))  # from the first point on, none missing, none twice
    # Everything written or on disk by the last report is there; what sat in memory at the kill (up to one
    # flush interval's worth) is the only loss, and the figures above show its size.
    assert len(got) >= written + spooled
    assert again.stats.points_failed == 0


def test_with_a_spool_and_api_v1_the_store_opens_while_influxd_is_down(influxdb: Server, tmp_path: Path) -> None:
    kill_server(influxdb)
    store = open_store(influxdb.url, api="v1", database="late", embedded_path=tmp_path / "history.sqlite")
    assert "unreachable" in store.stats.last_error
    store.write_states(points(0, 40))
    wait_for(lambda: store.stats.spooled == 40)
    restart_influxdb(influxdb)  # a fresh database: it has to be created before the replay can go through
    wait_for(lambda: store.stats.spool_pending == 0)
    store.close()
    assert store.stats.points_written == 40 and store.stats.points_failed == 0
    assert stored(influxdb.url, "late") == list(range(40))


def test_with_a_spool_and_api_auto_the_store_opens_while_influxd_is_down_as_v1_without_a_token(
    influxdb: Server, tmp_path: Path
) -> None:
    kill_server(influxdb)
    store = open_store(influxdb.url, api="auto", database="auto", embedded_path=tmp_path / "history.sqlite")
    assert isinstance(store, InfluxV1Store), "no token: a 1.x server is the only one it can be"
    store.write_states(points(0, 25))
    wait_for(lambda: store.stats.spooled == 25)
    restart_influxdb(influxdb)
    wait_for(lambda: store.stats.spool_pending == 0)
    store.close()
    assert stored(influxdb.url, "auto") == list(range(25))


def test_points_spooled_under_a_wrong_guess_of_the_api_reach_the_server_once_it_says_which(
    influxdb: Server, tmp_path: Path
) -> None:
    """api = "auto" with a token set, started while influxd is down, guesses 2.x and spools under the v2
    directory; the next start finds a 1.x server and replays those points into the configured database."""
    settings: dict[str, Any] = {
        "api": "auto", "database": "guessed", "token": "t", "org": "o", "bucket": "b",
        "embedded_path": tmp_path / "history.sqlite",
    }  # fmt: skip
    kill_server(influxdb)
    guessed = open_store(influxdb.url, **settings)
    assert isinstance(guessed, InfluxV2Store), "a token is set: the guess is 2.x/3.x"
    guessed.write_states(points(0, 30))
    wait_for(lambda: guessed.stats.spooled == 30)
    guessed.close()
    spooled = [d for d in (tmp_path / SPOOL_DIR).iterdir() if list(d.glob("*.seg"))]
    assert [d.name.split("-")[0] for d in spooled] == ["v2"], spooled
    restart_influxdb(influxdb)
    store = open_store(influxdb.url, **settings)
    assert isinstance(store, InfluxV1Store), "the server answers: it is 1.x"
    store.write_states(points(30, 10))
    wait_for(lambda: store.stats.spool_pending == 0 and store.stats.replayed == 30)
    store.close()  # flushes the 10 new points
    assert store.stats.points_failed == 0, store.stats
    assert stored(influxdb.url, "guessed") == list(range(40)), "every point, once"
    assert not list(spooled[0].glob("*.seg")), "the guessed API's spool is emptied, not left to replay again"


def test_without_a_spool_api_auto_still_refuses_to_start_while_influxd_is_down(influxdb: Server) -> None:
    kill_server(influxdb)
    try:
        open_store(influxdb.url, api="auto")
    except StoreUnreachableError as err:
        assert "did not answer GET /ping" in str(err)
    else:
        raise AssertionError("a store with nowhere to keep points opened against a dead server")
    finally:
        restart_influxdb(influxdb)


def test_a_spool_an_earlier_version_left_is_replayed_into_the_configured_database(
    influxdb: Server, tmp_path: Path
) -> None:
    """Upgrading: points spooled into influx-spool/ itself (the layout before one directory per destination)
    reach the database the service is configured for, once."""
    root = tmp_path / SPOOL_DIR
    legacy = Spool(root, StoreStats(), max_bytes=1 << 20, segment_bytes=4096)
    for b in range(5):
        legacy.append([f"zone_state,zone=z occupancy={i}.0 {int((T0 + i) * 1e9)}" for i in range(b * 10, b * 10 + 10)])
    legacy.close()
    store = open_store(influxdb.url, api="v1", database="upgraded", embedded_path=tmp_path / "history.sqlite")
    wait_for(lambda: store.stats.spool_pending == 0)
    store.close()
    assert store.stats.replayed == 50 and store.stats.points_failed == 0
    assert stored(influxdb.url, "upgraded") == list(range(50))
    assert not list(root.glob("*.seg"))
