"""ZoneTracker: counters, anchors, rates, arrivals by local day, health, restart."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detect.rates import FlowRing
from detect.state import ZoneTracker
from domain.levels import Level
from domain.profile import CapacityProfile
from domain.site import Site
from domain.values import Reading, ZoneState

SH = ZoneInfo("Asia/Shanghai")
NOON = dt.datetime(2026, 3, 10, 12, 0, tzinfo=SH).timestamp()  # a Tuesday


@pytest.fixture
def tracker(mini_site: Site) -> ZoneTracker:
    return ZoneTracker(mini_site, CapacityProfile(mini_site))


def flow(zone: str, ts: float, inflow: int = 0, outflow: int = 0, sensor: str = "", interval: float = 60.0) -> Reading:
    sensor = sensor or {"seg-1": "seg1-west", "seg-2": "seg2-gate", "plaza": "plaza-gate"}[zone]
    return Reading(
        sensor=sensor,
        zone=zone,
        kind="flow",
        ts=ts,
        seq=0,
        interval_s=interval,
        inflow=inflow,
        outflow=outflow,
    )


def count(zone: str, ts: float, n: int, sensor: str = "cam") -> Reading:
    return Reading(sensor=sensor, zone=zone, kind="occupancy", ts=ts, seq=0, count=n)


def density(ts: float, d: float, sensor: str = "plaza-cam") -> Reading:
    return Reading(sensor=sensor, zone="plaza", kind="density", ts=ts, seq=0, density=d)


def status(zone: str, sensor: str, ts: float, state: str) -> Reading:
    return Reading(sensor=sensor, zone=zone, kind="status", ts=ts, seq=0, status=state, detail="lens dirty")


def state_of(t: ZoneTracker, zone: str, now: float) -> ZoneState:
    return next(s for s in t.snapshot(now) if s.zone == zone)


def test_flows_integrate_occupancy_from_all_entrances(tracker: ZoneTracker) -> None:
    tracker.apply(flow("seg-1", NOON, inflow=100, outflow=10))
    tracker.apply(flow("seg-1", NOON, inflow=50, outflow=40, sensor="seg1-east"))
    tracker.apply(flow("seg-1", NOON + 60, inflow=20, outflow=70))
    s = state_of(tracker, "seg-1", NOON + 60)
    assert s.occupancy == 50
    assert s.capacity == 2000 and s.share == pytest.approx(50 / 2000)
    assert s.density == pytest.approx(50 / 2000)  # occupancy / area: no density sensor here
    assert s.arrivals_today == 170


def test_occupancy_never_negative(tracker: ZoneTracker) -> None:
    tracker.apply(flow("seg-2", NOON, inflow=5))
    tracker.apply(flow("seg-2", NOON + 60, outflow=40))
    assert state_of(tracker, "seg-2", NOON + 60).occupancy == 0
    tracker.apply(flow("seg-2", NOON + 120, inflow=7))
    assert state_of(tracker, "seg-2", NOON + 120).occupancy == 7  # floor at 0, then counts on from there


def test_first_anchor_sets_occupancy_then_anchors_blend(tracker: ZoneTracker) -> None:
    tracker.apply(flow("plaza", NOON, inflow=10))
    tracker.apply(count("plaza", NOON + 1, 800))  # service started with people already there
    assert state_of(tracker, "plaza", NOON + 1).occupancy == 800
    tracker.apply(flow("plaza", NOON + 60, inflow=100))  # counters carry fast changes between anchors
    assert state_of(tracker, "plaza", NOON + 60).occupancy == 900
    tracker.apply(count("plaza", NOON + 61, 1000))  # gain 0.5: halfway to the measurement
    assert state_of(tracker, "plaza", NOON + 61).occupancy == 950


def test_density_reading_anchors_via_area_and_is_reported_when_fresher(tracker: ZoneTracker) -> None:
    tracker.apply(density(NOON, 1.2))  # plaza is 1000 m²
    s = state_of(tracker, "plaza", NOON)
    assert s.occupancy == 1200 and s.density == pytest.approx(1.2)
    tracker.apply(flow("plaza", NOON + 60, inflow=300))
    s = state_of(tracker, "plaza", NOON + 60)
    assert s.density == pytest.approx(1.5)  # counters moved since: occupancy / area
    tracker.apply(density(NOON + 70, 1.8))
    s = state_of(tracker, "plaza", NOON + 70)
    assert s.occupancy == pytest.approx(1500 + 0.5 * 300)
    assert s.density == pytest.approx(1.8)  # measured after the last counter change


def test_several_anchor_sensors_are_averaged(tracker: ZoneTracker) -> None:
    tracker.apply(count("plaza", NOON, 1000, sensor="cam-a"))
    tracker.apply(count("plaza", NOON + 10, 1400, sensor="cam-b"))
    # measured = (1000 + 1400) / 2 = 1200; estimate 1000 + 0.5 × 200
    assert state_of(tracker, "plaza", NOON + 10).occupancy == 1100


def test_stale_anchor_sensor_is_left_out_of_the_average(tracker: ZoneTracker) -> None:
    tracker.apply(count("plaza", NOON, 1000, sensor="cam-a"))
    tracker.apply(count("plaza", NOON + 600, 1400, sensor="cam-b"))  # cam-a silent 10 min
    assert state_of(tracker, "plaza", NOON + 600).occupancy == 1200


def test_late_flow_before_anchor_gives_same_result_as_in_order(mini_site: Site) -> None:
    prof = CapacityProfile(mini_site)
    in_order, late = ZoneTracker(mini_site, prof), ZoneTracker(mini_site, prof)
    readings = [
        count("plaza", NOON, 500),
        flow("plaza", NOON + 60, inflow=80),
        count("plaza", NOON + 90, 600),
    ]
    for r in readings:
        in_order.apply(r)
    for r in (readings[0], readings[2], readings[1]):  # the flow arrives after the later anchor
        late.apply(r)
    assert state_of(late, "plaza", NOON + 90).occupancy == pytest.approx(
        state_of(in_order, "plaza", NOON + 90).occupancy
    )


def test_late_flow_before_first_anchor_is_already_in_it(tracker: ZoneTracker) -> None:
    tracker.apply(count("plaza", NOON + 60, 500))
    tracker.apply(flow("plaza", NOON, inflow=80))
    s = state_of(tracker, "plaza", NOON + 60)
    assert s.occupancy == 500 and s.arrivals_today == 80


def test_rates_over_the_window(tracker: ZoneTracker) -> None:
    for i in range(10):  # 120 in, 60 out every minute for 10 minutes
        tracker.apply(flow("seg-2", NOON + 60 * (i + 1), inflow=120, outflow=60))
    s = state_of(tracker, "seg-2", NOON + 600)
    assert s.inflow_per_min == pytest.approx(120)
    assert s.outflow_per_min == pytest.approx(60)
    # Five minutes of silence later the 300 s window is empty.
    s = state_of(tracker, "seg-2", NOON + 900)
    assert s.inflow_per_min == 0 and s.outflow_per_min == 0


def test_rates_follow_a_surge(tracker: ZoneTracker) -> None:
    for i in range(10):
        tracker.apply(flow("seg-2", NOON + 60 * (i + 1), inflow=60))
    for i in range(10, 15):
        tracker.apply(flow("seg-2", NOON + 60 * (i + 1), inflow=300))
    assert state_of(tracker, "seg-2", NOON + 900).inflow_per_min == pytest.approx(300)


def test_rates_at_start_are_not_diluted_by_the_empty_window(tracker: ZoneTracker) -> None:
    tracker.apply(flow("seg-2", NOON + 60, inflow=90))
    assert state_of(tracker, "seg-2", NOON + 60).inflow_per_min == pytest.approx(90)


def test_arrivals_reset_at_local_midnight(tracker: ZoneTracker) -> None:
    midnight = dt.datetime(2026, 3, 11, 0, 0, tzinfo=SH).timestamp()
    tracker.apply(flow("seg-1", midnight - 120, inflow=40))
    tracker.apply(flow("seg-1", midnight - 60, inflow=30))
    assert state_of(tracker, "seg-1", midnight - 1).arrivals_today == 70
    assert state_of(tracker, "seg-1", midnight).arrivals_today == 0  # by event time, even before new data
    tracker.apply(flow("seg-1", midnight + 60, inflow=5))
    tracker.apply(flow("seg-1", midnight - 1, inflow=9))  # late reading from yesterday
    s = state_of(tracker, "seg-1", midnight + 60)
    assert s.arrivals_today == 5
    assert s.occupancy == 84  # people still count, whatever day they came


def test_midnight_is_local_not_utc(tracker: ZoneTracker) -> None:
    utc_midnight = dt.datetime(2026, 3, 11, 0, 0, tzinfo=dt.UTC).timestamp()  # 08:00 in Shanghai
    tracker.apply(flow("seg-1", utc_midnight - 60, inflow=40))
    tracker.apply(flow("seg-1", utc_midnight + 60, inflow=30))
    assert state_of(tracker, "seg-1", utc_midnight + 60).arrivals_today == 70


def test_healthy_until_silent_for_three_intervals(tracker: ZoneTracker) -> None:
    assert not state_of(tracker, "seg-2", NOON).healthy  # no data yet: unknown, not calm
    tracker.apply(flow("seg-2", NOON, inflow=1))
    assert state_of(tracker, "seg-2", NOON + 180).healthy  # 3 × 60 s
    assert not state_of(tracker, "seg-2", NOON + 181).healthy
    tracker.apply(flow("seg-2", NOON + 240, inflow=1))
    assert state_of(tracker, "seg-2", NOON + 240).healthy
    assert tracker.problems("seg-2", NOON + 240) == []
    assert tracker.problems("seg-2", NOON + 500) == ["seg2-gate: silent for 260 s (allowed 180 s)"]
    assert tracker.problems("seg-1", NOON) == ["no reading yet"]


def test_one_silent_sensor_makes_the_zone_unhealthy(tracker: ZoneTracker) -> None:
    for i in range(5):  # seg-1 has two counters; only the west one reports
        tracker.apply(flow("seg-1", NOON + 60 * i, inflow=10, sensor="seg1-west"))
    assert state_of(tracker, "seg-1", NOON + 180).healthy  # grace from the zone's first reading
    assert not state_of(tracker, "seg-1", NOON + 240).healthy
    assert tracker.problems("seg-1", NOON + 240) == ["seg1-east: silent for 240 s (allowed 180 s, never heard from)"]
    tracker.apply(flow("seg-1", NOON + 240, sensor="seg1-east"))
    assert state_of(tracker, "seg-1", NOON + 240).healthy
    assert not state_of(tracker, "seg-1", NOON + 500).healthy  # both silent now
    assert len(tracker.problems("seg-1", NOON + 500)) == 2


def test_fault_and_offline_status(tracker: ZoneTracker) -> None:
    tracker.apply(flow("plaza", NOON, inflow=1))
    tracker.apply(density(NOON, 0.5))
    tracker.apply(status("plaza", "plaza-cam", NOON + 1, "fault"))
    assert not state_of(tracker, "plaza", NOON + 2).healthy
    assert tracker.problems("plaza", NOON + 2) == ["plaza-cam: fault (lens dirty)"]
    tracker.apply(density(NOON + 10, 0.6))  # data from a faulty sensor does not clear the fault
    assert not state_of(tracker, "plaza", NOON + 10).healthy
    tracker.apply(status("plaza", "plaza-cam", NOON + 20, "online"))
    assert state_of(tracker, "plaza", NOON + 20).healthy
    tracker.apply(status("plaza", "plaza-gate", NOON + 30, "offline"))
    assert not state_of(tracker, "plaza", NOON + 30).healthy
    tracker.apply(flow("plaza", NOON + 90, inflow=1))  # data after "offline": evidently back
    assert state_of(tracker, "plaza", NOON + 90).healthy


def test_faulty_anchor_does_not_move_occupancy(tracker: ZoneTracker) -> None:
    tracker.apply(density(NOON, 0.5))
    tracker.apply(status("plaza", "plaza-cam", NOON + 1, "fault"))
    tracker.apply(density(NOON + 10, 4.0))
    assert state_of(tracker, "plaza", NOON + 10).occupancy == 500


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (Reading(sensor="x", zone="nowhere", kind="flow", ts=NOON, seq=0, inflow=1), "unknown_zone"),
        (Reading(sensor="x", zone="plaza", kind="flow", ts=NOON, seq=0, inflow=-1), "negative_flow"),
        (Reading(sensor="x", zone="plaza", kind="flow", ts=float("nan"), seq=0), "bad_timestamp"),
        (Reading(sensor="x", zone="plaza", kind="occupancy", ts=NOON, seq=0), "bad_count"),
        (
            Reading(sensor="x", zone="plaza", kind="density", ts=NOON, seq=0, density=float("inf")),
            "bad_density",
        ),
        (Reading(sensor="x", zone="plaza", kind="status", ts=NOON, seq=0, status="asleep"), "bad_status"),
    ],
)
def test_bad_readings_are_counted_not_raised(tracker: ZoneTracker, reading: Reading, reason: str) -> None:
    tracker.apply(reading)
    assert tracker.rejected == {reason: 1}
    assert all(s.occupancy == 0 for s in tracker.snapshot(NOON))


def test_district(tracker: ZoneTracker) -> None:
    tracker.apply(flow("seg-1", NOON, inflow=100))
    tracker.apply(flow("plaza", NOON, inflow=50, outflow=20))
    states = tracker.snapshot(NOON)
    states[0].level = Level.II
    d = tracker.district(NOON, states)
    assert d.people_now == 130 and d.arrivals_today == 150
    assert d.peak_day_visits == 100_000
    assert d.expected_arrivals_so_far == pytest.approx(tracker.profile.expected_so_far(NOON))
    assert 0 < d.expected_arrivals_so_far < 100_000 * 0.6
    assert d.zones_by_level == {"normal": 2, "IV blue": 0, "III yellow": 0, "II orange": 1, "I red": 0}


def test_snapshot_round_trip_survives_json(mini_site: Site, tracker: ZoneTracker) -> None:
    tracker.apply(count("plaza", NOON, 700))
    tracker.apply(status("plaza", "plaza-cam", NOON, "fault"))
    for i in range(5):
        tracker.apply(flow("seg-1", NOON + 60 * i, inflow=100, outflow=30))
    tracker.apply(Reading(sensor="x", zone="nowhere", kind="flow", ts=NOON, seq=0))
    data = json.loads(json.dumps(tracker.to_snapshot()))
    back = ZoneTracker(mini_site, CapacityProfile(mini_site))
    back.from_snapshot(data)
    now = NOON + 300
    assert back.snapshot(now) == tracker.snapshot(now)
    assert back.rejected == tracker.rejected
    # And it carries on the same way.
    for t in (tracker, back):
        t.apply(flow("seg-1", now + 60, inflow=10))
        t.apply(count("plaza", now + 60, 900))
    assert back.snapshot(now + 60) == tracker.snapshot(now + 60)


@pytest.mark.parametrize(
    "data",
    [
        {"version": 99, "zones": {}},
        [],
        {"version": 1},
        {"version": 1, "zones": {"plaza": {"occupancy": "lots"}}},
        {"version": 1, "zones": {"plaza": None}},
    ],
)
def test_unfit_snapshot_is_refused_and_state_kept(tracker: ZoneTracker, data: object) -> None:
    tracker.apply(count("plaza", NOON, 700))
    before = tracker.snapshot(NOON)
    with pytest.raises(ValueError, match="snapshot"):
        tracker.from_snapshot(data)  # type: ignore[arg-type]
    assert tracker.snapshot(NOON) == before


def test_snapshot_with_a_removed_zone(mini_site: Site, tracker: ZoneTracker) -> None:
    tracker.apply(count("plaza", NOON, 700))
    data = tracker.to_snapshot()
    data["zones"]["gone"] = data["zones"]["plaza"]
    back = ZoneTracker(mini_site, CapacityProfile(mini_site))
    back.from_snapshot(data)
    assert back.dropped_zones == ["gone"]
    assert state_of(back, "plaza", NOON).occupancy == 700


_flows = st.lists(
    st.tuples(
        st.sampled_from(["flow", "anchor"]),
        st.integers(0, 5000),
        st.integers(0, 5000),
        st.floats(-600, 600),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_flows)
def test_occupancy_never_negative_for_any_sequence(mini_site: Site, steps: list[tuple[str, int, int, float]]) -> None:
    t = ZoneTracker(mini_site, CapacityProfile(mini_site))
    for kind, a, b, dts in steps:  # any order of event times, late flows included
        ts = NOON + dts
        t.apply(flow("plaza", ts, inflow=a, outflow=b) if kind == "flow" else count("plaza", ts, a))
        s = state_of(t, "plaza", NOON + 600)
        assert s.occupancy >= 0 and s.share >= 0 and s.density >= 0
        assert s.inflow_per_min >= 0 and s.outflow_per_min >= 0


def test_apply_cost_per_reading(tracker: ZoneTracker) -> None:
    import time

    readings = [flow("seg-1", NOON + i, inflow=3, outflow=2, interval=10) for i in range(20_000)]
    t0 = time.perf_counter()
    for r in readings:
        tracker.apply(r)
    per = (time.perf_counter() - t0) / len(readings)
    assert per < 50e-6, f"{per * 1e6:.1f} µs per reading"


def _spread_reference(ring: FlowRing, ts: float, interval_s: float, inflow: int, outflow: int) -> None:
    """FlowRing.add as first written, a _put call per bucket with max/min: what the inlined loop must equal."""
    start = ts - max(interval_s, 0.0)
    if ring.first_ts is None or start < ring.first_ts:
        ring.first_ts = start
    b_end = math.floor(ts / ring.bucket_s)
    if interval_s <= 0:
        ring._put(b_end, inflow, outflow)
        return
    for b in range(max(math.floor(start / ring.bucket_s), b_end - ring.n + 1), b_end + 1):
        lo, hi = max(start, b * ring.bucket_s), min(ts, (b + 1) * ring.bucket_s)
        if hi > lo:
            f = (hi - lo) / interval_s
            ring._put(b, inflow * f, outflow * f)


def test_flow_ring_spreads_exactly_as_a_put_per_bucket() -> None:
    """Random readings (late, repeated, zero and negative intervals, whole and fractional bucket widths): the
    ring's slots and rates equal, to the bit, those of spreading with one _put per bucket."""
    rng = random.Random(5)
    for _ in range(300):
        bucket_s, window_s = rng.choice([10.0, 7.0, 0.1, 3.3]), rng.choice([300.0, 60.0, 35.0])
        ring, ref = FlowRing(window_s, bucket_s), FlowRing(window_s, bucket_s)
        t = 1.8e9 + rng.random() * 100
        for _ in range(rng.randint(1, 40)):
            ts = t + rng.choice([0, 1, 10, 60, 300, -30, -200]) + rng.random() * rng.choice([0, 1])
            t = max(t, ts)
            interval, fin, fout = (
                rng.choice([60.0, 30.0, 0.0, -5.0, 5.5, 900.0]),
                rng.randint(0, 50),
                rng.randint(0, 50),
            )
            ring.add(ts, interval, fin, fout)
            _spread_reference(ref, ts, interval, fin, fout)
            assert ring.to_dict() == ref.to_dict()
            assert ring.rates(t + 5) == ref.rates(t + 5)
