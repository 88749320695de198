from __future__ import annotations

import json

import pytest

from domain.site import Site
from domain.values import Reading
from ingest.pipeline import Ingestor
from ingest.rejection import Rejection
from ingest.sequencer import MAX_COUNTED_GAP
from tests.ingest.helpers import T0, count, payload, site_with_area, topic, total

RX = T0 + 1.0  # received one second after the event, unless a test says otherwise


@pytest.fixture(scope="module")
def site() -> Site:
    return site_with_area()


class Rig:
    def __init__(self, site: Site, lateness_s: float = 120.0) -> None:
        self.rejections: list[Rejection] = []
        self.ing = Ingestor(site, lateness_s=lateness_s, on_reject=self.rejections.append)

    def feed(self, msg: tuple[str, bytes], received_at: float | None = None) -> list[Reading]:
        t, p = msg
        return self.ing.feed(t, p, RX if received_at is None else received_at)

    def reasons(self) -> list[str]:
        return [r.reason for r in self.rejections]


def seqs(rs: list[Reading]) -> list[int]:
    return [r.seq for r in rs]


@pytest.fixture
def rig(site: Site) -> Rig:
    return Rig(site)


def test_interval_count_released_immediately(rig: Rig) -> None:
    [r] = rig.feed(count("seg1-west", 1, T0, 5, 2, interval_s=30))
    assert r == Reading(
        sensor="seg1-west", zone="seg-1", kind="flow", ts=T0, seq=1, interval_s=30.0, inflow=5, outflow=2
    )
    s = rig.ing.stats
    assert (s.received, s.accepted, s.released, s.rejected) == (1, 1, 1, {})


def test_duplicates_dropped_and_counted(rig: Rig) -> None:
    assert seqs(rig.feed(count("seg1-west", 1, T0, 5, 2))) == [1]
    assert rig.feed(count("seg1-west", 1, T0, 5, 2)) == []
    assert seqs(rig.feed(count("seg1-west", 2, T0 + 60, 1, 1))) == [2]
    assert rig.feed(count("seg1-west", 1, T0, 5, 2)) == []
    # A duplicate of a message still held for a gap is caught too.
    assert rig.feed(count("seg1-west", 4, T0 + 180, 1, 1)) == []
    assert rig.feed(count("seg1-west", 4, T0 + 180, 1, 1)) == []
    s = rig.ing.stats
    assert s.duplicates == 3 and s.rejected == {"duplicate": 3}
    assert rig.reasons() == ["duplicate"] * 3
    assert rig.rejections[0].sensor == "seg1-west" and "seq 1" in rig.rejections[0].detail


def test_out_of_order_within_window_released_in_seq_order(rig: Rig) -> None:
    assert seqs(rig.feed(count("seg1-west", 1, T0, 1, 0))) == [1]
    assert rig.feed(count("seg1-west", 3, T0 + 120, 3, 0)) == []
    assert rig.feed(count("seg1-west", 4, T0 + 180, 4, 0)) == []
    assert rig.ing.stats.held == 2
    out = rig.feed(count("seg1-west", 2, T0 + 60, 2, 0))
    assert seqs(out) == [2, 3, 4] and [r.inflow for r in out] == [2, 3, 4]
    s = rig.ing.stats
    assert (s.held, s.missing, s.late_applied, s.rejected) == (0, 0, 0, {})


def test_streams_are_independent(rig: Rig) -> None:
    rig.feed(count("seg1-west", 1, T0, 1, 0))
    assert rig.feed(count("seg1-west", 3, T0 + 120, 1, 0)) == []  # held for the gap at 2
    assert seqs(rig.feed(count("seg2-gate", 1, T0, 1, 0))) == [1]  # another sensor is not held up
    assert seqs(rig.feed(count("seg2-gate", 2, T0 + 60, 1, 0))) == [2]


def test_gap_expires_on_processing_time(rig: Rig) -> None:
    rig.feed(count("seg1-west", 1, T0, 1, 0), received_at=RX)
    assert rig.feed(count("seg1-west", 3, T0 + 120, 3, 0), received_at=RX + 120) == []
    assert rig.ing.expire(RX + 200) == []  # 80 s held: still within the 120 s window
    out = rig.ing.expire(RX + 241)
    assert seqs(out) == [3]
    s = rig.ing.stats
    assert (s.missing, s.held) == (1, 0)
    assert rig.ing.expire(RX + 1000) == []


def test_gap_expires_on_event_time(rig: Rig) -> None:
    rig.feed(count("seg1-west", 1, T0, 1, 0))
    assert rig.feed(count("seg1-west", 3, T0 + 120, 1, 0)) == []
    assert rig.feed(count("seg1-west", 4, T0 + 180, 1, 0)) == []
    assert rig.feed(count("seg1-west", 5, T0 + 240, 1, 0)) == []  # 240 - 120 = 120: not yet past
    out = rig.feed(count("seg1-west", 6, T0 + 300, 1, 0))  # 180 s past the first held: give up on 2
    assert seqs(out) == [3, 4, 5, 6]
    assert rig.ing.stats.missing == 1


def test_late_interval_count_still_applied(rig: Rig) -> None:
    rig.feed(count("seg1-west", 1, T0, 1, 0))
    rig.feed(count("seg1-west", 3, T0 + 120, 1, 0))
    assert seqs(rig.ing.flush()) == [3]
    [late] = rig.feed(count("seg1-west", 2, T0 + 60, 7, 1))
    assert (late.seq, late.ts, late.inflow, late.outflow) == (2, T0 + 60, 7, 1)
    s = rig.ing.stats
    assert (s.late_applied, s.missing, s.accepted) == (1, 1, 3)
    # It filled the gap: a second copy is a duplicate, not another late count.
    assert rig.feed(count("seg1-west", 2, T0 + 60, 7, 1)) == []
    assert rig.reasons() == ["duplicate"]


def test_late_total_dropped_as_too_late(rig: Rig) -> None:
    rig.feed(total("seg1-east", 1, T0, 100, 50))
    rig.feed(total("seg1-east", 3, T0 + 120, 130, 60))
    [r] = rig.ing.flush()
    assert (r.outflow, r.inflow) == (30, 10)  # delta over the gap; reversed counter
    assert rig.feed(total("seg1-east", 2, T0 + 60, 110, 55)) == []
    assert rig.reasons() == ["too_late"]
    assert "next total" in rig.rejections[0].detail


def test_older_than_first_seen_is_not_applied(rig: Rig) -> None:
    rig.feed(count("seg1-west", 10, T0, 1, 0))
    assert rig.feed(count("seg1-west", 9, T0 - 60, 1, 0)) == []
    assert rig.reasons() == ["too_late"]


def test_totals_become_deltas_with_direction_reversed(rig: Rig) -> None:
    # seg1-east sends running totals and is mounted reversed: its "in" is people leaving seg-1.
    assert rig.feed(total("seg1-east", 1, T0, 1000, 400)) == []  # baseline only
    [r] = rig.feed(total("seg1-east", 2, T0 + 60, 1030, 410))
    assert (r.kind, r.zone, r.inflow, r.outflow, r.interval_s, r.ts) == (
        "flow",
        "seg-1",
        10,
        30,
        60.0,
        T0 + 60,
    )
    [r2] = rig.feed(total("seg1-east", 3, T0 + 120, 1030, 410))
    assert (r2.inflow, r2.outflow) == (0, 0)
    s = rig.ing.stats
    assert (s.baselines, s.resets, s.released) == (1, 0, 2)


def test_total_reset_at_midnight(rig: Rig) -> None:
    rig.feed(total("seg1-east", 500, T0, 52_000, 51_000))
    [before] = rig.feed(total("seg1-east", 501, T0 + 60, 52_010, 51_040))
    assert (before.outflow, before.inflow) == (10, 40)
    [after] = rig.feed(total("seg1-east", 502, T0 + 120, 3, 1))  # counter zeroed at midnight
    assert (after.outflow, after.inflow) == (3, 1)  # people counted since the reset, never negative
    [nxt] = rig.feed(total("seg1-east", 503, T0 + 180, 8, 2))
    assert (nxt.outflow, nxt.inflow) == (5, 1)
    s = rig.ing.stats
    assert (s.resets, s.restarts, s.rejected) == (1, 0, {})


def test_reboot_restarts_seq_and_resets_totals(rig: Rig) -> None:
    rig.feed(total("seg1-east", 41, T0, 900, 800))
    rig.feed(total("seg1-east", 42, T0 + 60, 950, 820))
    [r] = rig.feed(total("seg1-east", 1, T0 + 200, 4, 2))  # rebooted: seq 1 again, later time
    assert (r.outflow, r.inflow, r.seq) == (4, 2, 1)
    [r2] = rig.feed(total("seg1-east", 2, T0 + 260, 9, 2))
    assert (r2.outflow, r2.inflow) == (5, 0)
    s = rig.ing.stats
    assert (s.restarts, s.resets, s.duplicates, s.rejected) == (1, 1, 0, {})


def test_reboot_of_interval_counter_flushes_held_and_restarts(rig: Rig) -> None:
    rig.feed(count("seg1-west", 7, T0, 1, 0))
    assert rig.feed(count("seg1-west", 9, T0 + 120, 9, 0)) == []  # held for 8
    out = rig.feed(count("seg1-west", 1, T0 + 300, 1, 1), received_at=T0 + 301)
    assert seqs(out) == [9, 1]
    assert seqs(rig.feed(count("seg1-west", 2, T0 + 360, 1, 1), received_at=T0 + 361)) == [2]
    s = rig.ing.stats
    assert (s.restarts, s.missing, s.held, s.rejected) == (1, 1, 0, {})


def test_gauges_and_status(rig: Rig) -> None:
    [occ] = rig.feed((topic("plaza-area", "occupancy"), payload("plaza-area", 1, T0, count=412)))
    assert (occ.kind, occ.zone, occ.count) == ("occupancy", "plaza", 412)
    [den] = rig.feed((topic("plaza-cam", "density"), payload("plaza-cam", 1, T0, density="2.25")))
    assert (den.kind, den.density) == ("density", 2.25)
    [st] = rig.feed((topic("plaza-cam", "status"), payload("plaza-cam", 1, T0, state="fault", detail="fogged")))
    assert (st.kind, st.status, st.detail) == ("status", "fault", "fogged")


def test_timestamp_out_of_range(rig: Rig) -> None:
    assert rig.feed(count("seg1-west", 1, T0 - 7 * 3600, 1, 0), received_at=T0) == []
    assert rig.feed(count("seg1-west", 2, T0 + 600, 1, 0), received_at=T0) == []
    assert rig.reasons() == ["timestamp_out_of_range"] * 2
    assert "older than" in rig.rejections[0].detail and "ahead of" in rig.rejections[1].detail
    assert "NTP" in rig.rejections[0].detail
    # Within the limits, a message is fine.
    assert seqs(rig.feed(count("seg1-west", 3, T0 + 200, 1, 0), received_at=T0)) == [3]


def test_good_data_around_bad_data_is_kept(rig: Rig) -> None:
    t = topic("seg1-west", "count")
    out: list[Reading] = []
    out += rig.feed(count("seg1-west", 1, T0, 1, 0))
    out += rig.feed((t, b"{not json"))
    out += rig.feed(count("seg1-west", 2, T0 + 60, 2, 0))
    out += rig.feed((t, payload("seg1-west", 3, T0 + 120, **{"in": -4, "out": 0})))  # bad seq 3
    out += rig.feed(("dt/crowdflow/#", b"{}"))
    out += rig.feed(count("seg1-west", 4, T0 + 180, 4, 0))  # held: 3 was rejected, so it is missing
    out += rig.feed(("dt/crowdflow/riverside/seg-1/ghost/count", payload("ghost", 1, T0, **{"in": 1, "out": 0})))
    out += rig.feed(count("seg1-west", 5, T0 + 240, 5, 0))
    out += rig.ing.flush()
    assert seqs(out) == [1, 2, 4, 5]
    s = rig.ing.stats
    assert s.rejected == {"malformed_json": 1, "schema": 1, "bad_topic": 1, "unknown_sensor": 1}
    assert s.received == 8 and s.accepted == 4 and s.missing == 1
    assert len(rig.rejections) == 4 and all(r.received_at == RX for r in rig.rejections)


def test_lateness_window_is_configurable(site: Site) -> None:
    rig = Rig(site, lateness_s=10.0)
    rig.feed(count("seg1-west", 1, T0, 1, 0))
    assert rig.feed(count("seg1-west", 3, T0 + 5, 1, 0)) == []
    assert seqs(rig.feed(count("seg1-west", 4, T0 + 20, 1, 0))) == [3, 4]


def test_flush_releases_all_streams_in_seq_order(rig: Rig) -> None:
    rig.feed(count("seg1-west", 1, T0, 1, 0))
    rig.feed(count("seg1-west", 4, T0 + 180, 1, 0))
    rig.feed(count("seg1-west", 3, T0 + 120, 1, 0))
    rig.feed(count("seg2-gate", 1, T0, 1, 0))
    rig.feed(count("seg2-gate", 3, T0 + 120, 1, 0))
    out = rig.ing.flush()
    assert [(r.sensor, r.seq) for r in out] == [("seg1-west", 3), ("seg1-west", 4), ("seg2-gate", 3)]
    assert rig.ing.stats.held == 0 and rig.ing.flush() == []


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00", "9999-12-31T23:59:59", "0001-01-01T00:00:00+14:00", 0, 1e10])
def test_extreme_timestamps_are_rejected_not_crashing(rig: Rig, ts: object) -> None:
    raw = json.dumps({"sensor": "seg1-west", "ts": ts, "seq": 1, "in": 1, "out": 0}).encode()
    assert rig.ing.feed(topic("seg1-west", "count"), raw, T0) == []
    assert rig.reasons() in (["timestamp_out_of_range"], ["schema"])


def test_a_sensor_flooding_its_topic_is_bounded_and_counted_and_others_are_untouched(rig: Rig) -> None:
    """plaza-area sends 250 valid readings stamped within 2.5 s of one 10 s window: the first 200 are taken,
    the rest rejected as too_frequent with what to fix; another sensor's reading in the same seconds is taken."""
    taken = 0
    for i in range(250):
        msg = (topic("plaza-area", "occupancy"), payload("plaza-area", i, T0 + i * 0.01, count=40 + i % 3))
        taken += len(rig.feed(msg, received_at=T0 + 20))
    assert taken == 200
    assert rig.reasons() == ["too_frequent"] * 50
    assert "fix the device's reporting rate" in rig.rejections[0].detail
    assert rig.ing.stats.rejected == {"too_frequent": 50}
    assert len(rig.feed(count("seg1-west", 1, T0 + 2, 3, 1, interval_s=60), received_at=T0 + 20)) == 1


def test_an_hour_replayed_at_once_at_the_declared_interval_is_no_flood(rig: Rig) -> None:
    """A gate back from an outage sends the hour it buffered, one reading per interval: all of it counts."""
    start = T0 - 3600
    got = [rig.feed(count("seg2-gate", i, start + 60 * (i + 1), 2, 1), received_at=T0)[0] for i in range(60)]
    assert len(got) == 60 and sum(r.inflow for r in got) == 120
    assert rig.reasons() == []


def test_a_wild_seq_jump_is_a_sequence_reset_not_missing_messages(rig: Rig) -> None:
    """Found by scripts/fuzz.py: seq 1, then 2**53 - 1 (its gap was counted, up to quadrillions in /healthz).
    A gap wider than MAX_COUNTED_GAP, once given up, is a device whose sequence was reset: a restart, nothing
    counted missing, tracking goes on from the new sequence."""
    assert rig.feed(count("seg2-gate", 1, T0, 1, 0), received_at=T0)
    assert rig.feed(count("seg2-gate", 2**53 - 1, T0, 1, 0), received_at=T0) == []  # held, as any gap
    out = rig.feed(count("seg2-gate", 2, T0, 1, 0), received_at=T0 + 200)  # in order; the gap expires
    assert seqs(out) == [2, 2**53 - 1]
    s = rig.ing.stats
    assert (s.restarts, s.missing, s.held, s.accepted, s.rejected) == (1, 0, 0, 3, {})
    # Older seqs than the new sequence cannot be told from duplicates any more.
    assert rig.feed(count("seg2-gate", 3, T0, 1, 0), received_at=T0 + 201) == []
    assert rig.reasons() == ["too_late"]


def test_a_jump_up_to_max_counted_gap_is_lost_messages_and_one_more_a_reset(rig: Rig) -> None:
    """The bound itself: MAX_COUNTED_GAP seqs skipped are waited for and counted missing; one more is a reset.
    Meanwhile the old sequence goes on being taken in order (another device on the same topic, say)."""
    rig.feed(count("seg2-gate", 0, T0, 1, 0), received_at=T0)
    assert rig.feed(count("seg2-gate", 1 + MAX_COUNTED_GAP, T0 + 60, 1, 0), received_at=T0 + 60) == []
    assert seqs(rig.ing.expire(T0 + 60 + 121)) == [1 + MAX_COUNTED_GAP]
    s = rig.ing.stats
    assert (s.missing, s.restarts) == (MAX_COUNTED_GAP, 0)
    rig.feed(count("seg1-west", 0, T0, 1, 0), received_at=T0)
    assert rig.feed(count("seg1-west", 3 + MAX_COUNTED_GAP, T0 + 60, 1, 0), received_at=T0 + 60) == []
    assert seqs(rig.feed(count("seg1-west", 1, T0 + 61, 1, 0), received_at=T0 + 61)) == [1]  # the old one goes on
    assert seqs(rig.ing.expire(T0 + 60 + 121)) == [3 + MAX_COUNTED_GAP]
    assert (s.missing, s.restarts, s.held, s.rejected) == (MAX_COUNTED_GAP, 1, 0, {})


def test_after_a_flood_the_next_reading_is_not_held_for_the_gap_it_left(rig: Rig) -> None:
    """Rejected flood readings still move the sequence on: the first reading after the window is released at
    once, nothing counted missing; a repeat of an accepted seq is a duplicate, not part of the flood."""
    for i in range(210):
        rig.feed((topic("plaza-area", "occupancy"), payload("plaza-area", i, T0 + i * 0.01, count=40)), T0 + 3)
    assert rig.ing.stats.rejected == {"too_frequent": 10}
    rig.feed((topic("plaza-area", "occupancy"), payload("plaza-area", 5, T0 + 0.05, count=40)), T0 + 3)
    assert rig.ing.stats.rejected == {"too_frequent": 10, "duplicate": 1}
    later = rig.feed((topic("plaza-area", "occupancy"), payload("plaza-area", 210, T0 + 15, count=41)), T0 + 16)
    assert len(later) == 1 and rig.ing.stats.missing == 0 and rig.ing.stats.held == 0


def test_a_held_reading_released_by_the_flood_that_rejects_it_loses_nothing_else() -> None:
    """The 201st reading of a window arrives so late that its own offer gives up the gap before it and
    releases it with the held one in front: it is rejected as a flood, the held reading still comes out
    (this raised KeyError in the hold and lost both)."""
    rig = Rig(site_with_area())
    t = T0 + 5.0
    for s in range(200):
        rig.feed(count("seg1-west", s, t, 1, 0), received_at=t + 1)
    assert rig.feed(count("seg1-west", 300, T0 - 1, 1, 0), received_at=t + 1) == []  # a gap: held
    out = rig.feed(count("seg1-west", 301, t, 1, 0), received_at=t + 130)
    assert seqs(out) == [300]
    st = rig.ing.stats
    assert st.rejected == {"too_frequent": 1} and st.held == 0 and st.missing == 100


def test_a_flood_interleaved_across_a_window_boundary_is_bounded_per_window(rig: Rig) -> None:
    """Two connections flood one camera: readings of the window just before the current one keep arriving
    after the current one started. Each window still takes at most the limit (the stragglers used to pass)."""
    window_start = (T0 // 10 + 1) * 10  # a window boundary
    for i in range(600):
        ts = window_start - 1 if i % 2 else window_start + 1  # previous window, current window, alternately
        rig.feed((topic("plaza-area", "occupancy"), payload("plaza-area", i, ts, count=40)), window_start + 2)
    accepted = rig.ing.stats.accepted
    assert accepted == 2 * 200
    assert rig.ing.stats.rejected == {"too_frequent": 600 - accepted}
