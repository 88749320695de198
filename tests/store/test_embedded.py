"""EmbeddedStore: history in memory, persisted per minute to SQLite, read back after a restart."""

from __future__ import annotations

import gc
import math
import sqlite3
import tracemalloc
from pathlib import Path

from domain.levels import Level
from store.base import HISTORY_FIELDS, Store
from store.embedded import EmbeddedStore
from tests.store.conftest import T0, flow, state

M0 = 1_700_000_040.0  # a whole minute (T0 is 20 s past one)


def test_memory_history_buckets_means_and_worst_level() -> None:
    store = EmbeddedStore(None)
    assert isinstance(store, Store)
    states = [state("seg-1", M0 + i * 5, 100.0 + i) for i in range(24)]  # 2 minutes, every 5 s
    states[15].level = Level.II
    store.write_states(states)
    store.write_states([state("plaza", M0, 5.0)])
    h = store.history("seg-1", M0, M0 + 120)
    assert [r["ts"] for r in h] == [M0, M0 + 60]
    assert [r["occupancy"] for r in h] == [105.5, 117.5]
    assert [r["level"] for r in h] == [0.0, 3.0]
    assert h[0]["share"] == 0.1055 and h[0]["inflow_per_min"] == 10.0
    assert set(h[0]) == {"ts", *HISTORY_FIELDS} - {"expected_inflow_per_min"}  # no normal learned: left out
    assert [r["arrivals_today"] for r in h] == [3 * 111, 3 * 123]  # the highest count in the minute
    ten = store.history("seg-1", M0, M0 + 30, every_s=10)  # memory keeps 10 s resolution
    assert [r["ts"] for r in ten] == [M0, M0 + 10, M0 + 20]
    assert [r["occupancy"] for r in ten] == [100.5, 102.5, 104.5]
    assert store.history("nowhere", M0, M0 + 120) == []
    store.write_readings([flow("c", "seg-1", M0)])
    store.close()
    assert store.stats.points_written == 25 and store.stats.points_ignored == 1


def test_memory_is_bounded_by_keep_s() -> None:
    store = EmbeddedStore(None, keep_s=600)
    store.write_states([state("z", M0 + i) for i in range(3600)])
    h = store.history("z", M0, M0 + 3600, every_s=60)
    assert h[0]["ts"] >= M0 + 3600 - 660  # older slots fell out of memory
    ten = store.history("z", M0, M0 + 3600, every_s=10)
    assert [r["ts"] for r in ten] == [M0 + 3590 - 600 + 10 * k for k in range(61)]  # the newest + 600 s
    store.close()


def test_memory_is_allocated_at_a_zones_first_state_and_never_grows() -> None:
    store = EmbeddedStore(None)  # 6 h of 10 s slots
    store.write_states([state(z, M0) for z in ("a", "b")])
    first = store.memory_bytes()
    assert 0 < first <= 2 * 200 * 1024  # the budget: 200 KB a zone, models included
    gc.collect()
    tracemalloc.start()
    try:
        store.write_states([state("a", M0 + 5)])  # warm the write path's own allocations
        store.history("a", M0, M0 + 60)
        before = tracemalloc.get_traced_memory()[0]
        for hour in range(13):  # past the 6 h window twice: every position reused
            t = M0 + hour * 3600
            store.write_states([state(z, t + i * 5, float(i)) for i in range(720) for z in ("a", "b")])
        store.history("a", M0, M0 + 13 * 3600)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.memory_bytes() == first
    assert grown < 16 * 1024  # a few Python objects at most, not one per slot (that was ~1 MB a zone)
    store.close()


def test_a_slot_reused_after_the_window_shows_only_its_new_states() -> None:
    store = EmbeddedStore(None, keep_s=600)  # 61 positions: M0 and M0 + 610 share one
    store.write_states([state("z", M0 + i * 10, 10.0, level=Level.I, arrivals=900) for i in range(6)])
    store.write_states([state("z", M0 + 610, 50.0, arrivals=5)])
    store.write_states([state("z", M0 + 615, 70.0, arrivals=7)])
    h = store.history("z", M0, M0 + 700, every_s=10)
    assert [(r["ts"], r["occupancy"], r["level"], r["arrivals_today"]) for r in h] == [
        (M0 + 10, 10.0, 4.0, 900.0),  # M0 + 10 is exactly 600 s before the newest slot: still held
        (M0 + 20, 10.0, 4.0, 900.0),
        (M0 + 30, 10.0, 4.0, 900.0),
        (M0 + 40, 10.0, 4.0, 900.0),
        (M0 + 50, 10.0, 4.0, 900.0),
        (M0 + 610, 60.0, 0.0, 7.0),
    ]
    store.write_states([state("z", M0, 99.0)])  # older than memory reaches: ignored by the ring
    assert store.history("z", M0, M0 + 10, every_s=10) == []
    store.write_states([state("z", M0 + 3 * 3600, 1.0)])  # hours later: everything before has expired
    assert [r["ts"] for r in store.history("z", M0, M0 + 4 * 3600, every_s=10)] == [M0 + 3 * 3600]
    store.close()


def test_late_states_merge_into_their_slot() -> None:
    store = EmbeddedStore(None)
    store.write_states([state("z", M0 + 30, 10.0), state("z", M0 + 50, 20.0)])
    store.write_states([state("z", M0 + 31, 30.0), state("z", M0 + 41, 40.0)])  # late, out of order
    h = store.history("z", M0, M0 + 60, every_s=10)
    assert [(r["ts"], r["occupancy"]) for r in h] == [(M0 + 30, 20.0), (M0 + 40, 40.0), (M0 + 50, 20.0)]


def test_a_full_slot_takes_no_more_states_and_counts_them() -> None:
    store = EmbeddedStore(None)
    store.write_states([state("z", M0, 10.0)] * 65_535 + [state("z", M0 + 1, 99.0)])
    assert store.stats.points_written == 65_535 and store.stats.points_ignored == 1
    assert "one slot" in store.stats.last_error
    (row,) = store.history("z", M0, M0 + 10, every_s=10)
    assert row["occupancy"] == 10.0
    store.write_states([state("z", M0 + 10, 20.0)])  # the next slot takes states again
    assert store.history("z", M0 + 10, M0 + 20, every_s=10)[0]["occupancy"] == 20.0


def test_slot_numbers_centuries_apart_restart_the_window_or_are_ignored() -> None:
    store = EmbeddedStore(None, keep_s=1e-4, slot_s=1e-6)  # 32-bit slot numbers span 36 minutes here
    store.write_states([state("z", M0, 10.0)])
    store.write_states([state("z", M0 + 3000.0, 30.0)])  # 3e9 slots later: the window starts over
    assert [r["occupancy"] for r in store.history("z", M0 - 1, M0 + 3001, every_s=1)] == [30.0]
    store.write_states([state("z", M0, 50.0)])  # 3e9 slots before the newest: older than the window
    assert [r["occupancy"] for r in store.history("z", M0 - 1, M0 + 3001, every_s=1)] == [30.0]
    assert store.stats.points_written == 3


def test_nan_fields_are_skipped_and_bad_states_counted() -> None:
    store = EmbeddedStore(None)
    s = state("z", M0, 10.0)
    s.density = math.nan
    bad = state("z", math.inf)
    store.write_states([s, state("z", M0 + 1, 20.0), bad])
    (row,) = store.history("z", M0, M0 + 60)
    assert row["occupancy"] == 15.0 and row["density"] == 20.0 / 500
    assert store.stats.fields_skipped == 1 and store.stats.points_invalid == 1
    assert "not finite" in store.stats.last_error
    odd = state("z", M0 + 2, 30.0)
    odd.level = 200  # type: ignore[assignment]  # not a warning level: counted, not stored
    store.write_states([odd])
    assert store.stats.points_invalid == 2 and "not a warning level" in store.stats.last_error
    huge = state("z", M0 + 3, 30.0, arrivals=2**70)
    store.write_states([huge])
    assert store.stats.points_invalid == 3 and "out of range" in store.stats.last_error
    store.write_states([state("z", M0 + 4, 30.0, arrivals=-1)])  # odd but representable: kept
    assert store.history("z", M0, M0 + 60)[0]["occupancy"] == 20.0  # 10, 20 and the 30 kept


def test_history_survives_a_restart_from_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "hist" / "crowdflow.sqlite"
    store = EmbeddedStore(db, flush_interval_s=0.05)
    # 10 minutes at one state per 10 s, two zones
    store.write_states([state(z, M0 + i * 10, float(i)) for i in range(60) for z in ("a", "b")])
    store.history("a", M0, M0 + 600)
    store.close()
    store.close()
    assert store.stats.points_written == 120 and store.stats.points_failed == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM zone_state_1m").fetchone()[0] == 20  # a row per zone-minute

    again = EmbeddedStore(db)
    h = again.history("a", M0, M0 + 600)
    assert [r["ts"] for r in h] == [M0 + 60 * k for k in range(10)]
    assert [r["occupancy"] for r in h] == [6 * k + 2.5 for k in range(10)]
    two = again.history("a", M0, M0 + 600, every_s=120)  # buckets align to the epoch, as InfluxDB's do
    assert [r["occupancy"] for r in two] == [5.5, 17.5, 29.5, 41.5, 53.5]
    # New states after the restart: memory serves the recent part, SQLite the rest, without double counting.
    again.write_states([state("a", M0 + 600 + i * 10, 100.0) for i in range(6)])
    h2 = again.history("a", M0, M0 + 660)
    assert len(h2) == 11 and h2[-1]["occupancy"] == 100.0 and h2[0]["occupancy"] == 2.5
    again.close()


def test_late_state_for_a_written_minute_is_merged_not_duplicated(tmp_path: Path) -> None:
    db = tmp_path / "late.sqlite"
    store = EmbeddedStore(db, flush_interval_s=0.05)
    store.write_states([state("z", M0, 10.0), state("z", M0 + 60, 50.0)])  # minute M0 is sent
    store.write_states([state("z", M0 + 30, 30.0, level=Level.I)])  # late for minute M0
    store.close()
    again = EmbeddedStore(db)
    h = again.history("z", M0, M0 + 120)
    assert [(r["ts"], r["occupancy"], r["level"]) for r in h] == [(M0, 20.0, 4.0), (M0 + 60, 50.0, 0.0)]
    again.close()


def test_writes_after_close_are_counted() -> None:
    store = EmbeddedStore(None)
    store.close()
    store.write_states([state("z", T0)])
    assert store.stats.points_failed == 1 and "after close" in store.stats.last_error


def test_the_learned_normal_is_a_mean_of_what_is_known_and_arrivals_the_highest() -> None:
    store = EmbeddedStore(None)
    states = [state("z", M0 + i * 10, expected=None if i < 2 else 20.0 + i, arrivals=1000 + i) for i in range(6)]
    states[3].expected_inflow_per_min = math.nan  # a bad value is skipped and counted; None is merely unknown
    store.write_states(states)
    (row,) = store.history("z", M0, M0 + 60)
    assert row["expected_inflow_per_min"] == (22.0 + 24.0 + 25.0) / 3
    assert row["arrivals_today"] == 1005.0
    assert store.stats.fields_skipped == 1
    ten = store.history("z", M0, M0 + 60, every_s=10)
    assert [r.get("expected_inflow_per_min") for r in ten] == [None, None, 22.0, None, 24.0, 25.0]


def test_new_fields_survive_a_restart_and_late_states_merge(tmp_path: Path) -> None:
    db = tmp_path / "new.sqlite"
    store = EmbeddedStore(db, flush_interval_s=0.05)
    store.write_states([state("z", M0 + i * 10, expected=30.0 + i, arrivals=100 + i) for i in range(6)])
    store.write_states([state("z", M0 + 60, expected=None, arrivals=200)])  # minute M0 is sent
    store.write_states([state("z", M0 + 5, expected=45.0, arrivals=50)])  # late for minute M0
    store.close()
    again = EmbeddedStore(db)
    h = again.history("z", M0, M0 + 120)
    assert [r["ts"] for r in h] == [M0, M0 + 60]
    assert h[0]["expected_inflow_per_min"] == (sum(30.0 + i for i in range(6)) + 45.0) / 7
    assert h[0]["arrivals_today"] == 105.0  # the late, lower count does not lower the minute's highest
    assert "expected_inflow_per_min" not in h[1] and h[1]["arrivals_today"] == 200.0
    again.close()


OLD_SCHEMA = """
CREATE TABLE zone_state_1m (
    zone TEXT NOT NULL, ts REAL NOT NULL, n INTEGER NOT NULL,
    occupancy REAL, share REAL, density REAL, inflow_per_min REAL, outflow_per_min REAL,
    level INTEGER NOT NULL,
    PRIMARY KEY (zone, ts)
) WITHOUT ROWID
"""


def test_a_history_file_from_before_the_new_fields_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:  # as the previous version wrote it
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(OLD_SCHEMA)
        conn.executemany(
            "INSERT INTO zone_state_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [("z", M0 + 60 * k, 6, 100.0 + k, 0.1, 0.2, 10.0, 8.0, 2 if k == 1 else 0) for k in range(3)],
        )
    conn.close()
    store = EmbeddedStore(db, flush_interval_s=0.05)
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(zone_state_1m)")}
    conn.close()
    assert {"expected_inflow_per_min", "arrivals_today"} <= columns
    # New states, including one merged into an old row (the same minute).
    store.write_states([state("z", M0 + 120 + 30, 200.0, expected=40.0, arrivals=900)])
    store.write_states([state("z", M0 + 180 + i * 10, 300.0, expected=41.0, arrivals=950) for i in range(6)])
    store.close()
    assert store.stats.points_failed == 0 and store.stats.points_written == 7

    again = EmbeddedStore(db)
    h = again.history("z", M0, M0 + 240)
    assert [r["ts"] for r in h] == [M0, M0 + 60, M0 + 120, M0 + 180]
    assert [r["occupancy"] for r in h[:2]] == [100.0, 101.0] and h[1]["level"] == 2.0
    assert set(h[0]) == {"ts", *HISTORY_FIELDS} - {"expected_inflow_per_min", "arrivals_today"}
    assert h[2]["occupancy"] == (6 * 102.0 + 200.0) / 7  # merged, weighted by states
    assert h[2]["expected_inflow_per_min"] == 40.0 and h[2]["arrivals_today"] == 900.0
    assert h[3]["expected_inflow_per_min"] == 41.0 and h[3]["arrivals_today"] == 950.0
    again.close()
    EmbeddedStore(db).close()  # opening an up-to-date file changes nothing
