"""SensorHealth: offline, stuck, implausible and drifting sensors, recovery, and unhealthy zones."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from detect.health import SensorHealth
from domain.levels import Level
from domain.loader import load_site
from domain.site import Site
from domain.values import Reading, ZoneState

SH = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 10, 22, 0, tzinfo=SH).timestamp()


def flow(sensor: str, zone: str, ts: float, inflow: int, outflow: int = 0) -> Reading:
    return Reading(sensor=sensor, zone=zone, kind="flow", ts=ts, seq=0, interval_s=60, inflow=inflow, outflow=outflow)


def dens(ts: float, d: float) -> Reading:
    return Reading(sensor="plaza-cam", zone="plaza", kind="density", ts=ts, seq=0, density=d)


def kinds(h: SensorHealth, now: float, zone: str | None = None) -> list[tuple[str, str]]:
    return [(p.sensor, p.kind) for p in h.check(now) if zone is None or p.zone == zone]


def test_offline_after_n_intervals_and_back(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    for i in range(5):
        h.apply(flow("seg2-gate", "seg-2", T0 + 60 * i, 10), received_at=T0 + 60 * i + 2)
    last = T0 + 242
    assert kinds(h, last + 170, "seg-2") == []
    (p,) = [p for p in h.check(last + 250) if p.zone == "seg-2"]
    assert (p.sensor, p.kind, p.since) == ("seg2-gate", "offline", last)
    assert p.detail == "no data for 4 intervals (last 22:04:02); check the device's power and network"
    assert p.summary == "offline: no data for 4 min"
    assert h.issues(h.zone_problems("seg-2", last + 250)) == {"seg2-gate": "offline: no data for 4 min"}
    assert not h.zone_health("seg-2", last + 250)
    h.apply(flow("seg2-gate", "seg-2", T0 + 300, 10), received_at=last + 260)
    assert kinds(h, last + 260, "seg-2") == [] and h.zone_health("seg-2", last + 260)


def test_never_heard_from_and_device_status(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    for i in range(5):
        h.apply(flow("plaza-gate", "plaza", T0 + 60 * i, 10), received_at=T0 + 60 * i)
    (p,) = [p for p in h.check(T0 + 240) if p.zone == "plaza"]
    assert p.sensor == "plaza-cam" and p.kind == "offline" and "never heard from since 22:00:00" in p.detail
    assert p.summary == "offline: no data for 4 min (never heard from)"
    h.apply(Reading(sensor="seg2-gate", zone="seg-2", kind="status", ts=T0, seq=0, status="offline"), T0)
    assert ("seg2-gate", "offline") in kinds(h, T0 + 1)
    assert h.issues(h.zone_problems("seg-2", T0 + 1)) == {"seg2-gate": "offline: reported by the device"}
    h.apply(Reading(sensor="seg2-gate", zone="seg-2", kind="status", ts=T0, seq=0, status="fault", detail="lens"), T0)
    assert ("seg2-gate", "implausible") in kinds(h, T0 + 1)
    assert h.issues(h.zone_problems("seg-2", T0 + 1)) == {"seg2-gate": "implausible: the device reports a fault (lens)"}


def test_stuck_counter_repeating_a_nonzero_count(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    for i in range(10):
        h.apply(flow("seg2-gate", "seg-2", T0 + 60 * i, 12, 3), received_at=T0 + 60 * i)
    (p,) = [p for p in h.check(T0 + 560) if p.zone == "seg-2"]  # the others were never heard from
    assert (p.sensor, p.kind, p.since) == ("seg2-gate", "stuck", T0)
    assert p.detail.startswith("the same count (12 in, 3 out) 10 times in a row since 22:00:00")
    assert p.summary == "stuck: reads 12 in, 3 out 10 times in a row"
    assert not h.zone_health("seg-2", T0 + 560)
    h.apply(flow("seg2-gate", "seg-2", T0 + 600, 14, 2), received_at=T0 + 600)
    assert kinds(h, T0 + 600, "seg-2") == []


def test_zero_counter_is_stuck_only_while_neighbours_move(mini_site: Site) -> None:
    quiet = SensorHealth(mini_site)
    busy = SensorHealth(mini_site)
    for i in range(12):
        ts = T0 + 60 * i
        for h in (quiet, busy):
            h.apply(flow("seg1-west", "seg-1", ts, 0), received_at=ts)
            h.apply(flow("seg2-gate", "seg-2", ts, 0), received_at=ts)
        quiet.apply(flow("seg1-east", "seg-1", ts, 0), received_at=ts)
        busy.apply(flow("seg1-east", "seg-1", ts, 20 + i, 15), received_at=ts)
    now = T0 + 660
    assert [k for k in kinds(quiet, now) if k[1] == "stuck"] == []  # a quiet night: everything reads zero
    stuck = [p for p in busy.check(now) if p.kind == "stuck"]
    assert [(p.sensor, p.zone) for p in stuck] == [("seg1-west", "seg-1"), ("seg2-gate", "seg-2")]
    assert "while seg1-east nearby saw people move" in stuck[0].detail
    assert not busy.zone_health("seg-1", now)


def test_frozen_density_while_the_gate_counts(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    for i in range(10):
        ts = T0 + 60 * i
        h.apply(dens(ts, 0.85), received_at=ts)
        h.apply(flow("plaza-gate", "plaza", ts, 30 + i, 25), received_at=ts)
    assert kinds(h, T0 + 540, "plaza") == [("plaza-cam", "stuck")]
    assert h.issues(h.zone_problems("plaza", T0 + 540)) == {"plaza-cam": "stuck: reads 0.85 p/m² 10 times in a row"}


@pytest.mark.parametrize(
    ("reading", "words"),
    [
        (flow("seg2-gate", "seg-2", T0, 4095), "saturated count (in 4095"),
        (flow("seg2-gate", "seg-2", T0, 10, 65535), "saturated count (out 65535"),
        (flow("seg2-gate", "seg-2", T0, -3), "negative count (in -3)"),
        (flow("seg2-gate", "seg-2", T0, 7000), "7,000 people in 60 s (117/s), more than one entrance can pass"),
        (dens(T0, 12.5), "density 12.5 p/m² is above anything physically possible"),
        (dens(T0, -0.5), "negative or missing density"),
    ],
)
def test_implausible_values(mini_site: Site, reading: Reading, words: str) -> None:
    h = SensorHealth(mini_site)
    before = flow(reading.sensor, reading.zone, T0 - 60, 40, 30) if reading.kind == "flow" else dens(T0 - 60, 1.2)
    h.apply(before, received_at=T0 - 60)
    h.apply(reading, received_at=T0)
    (p,) = [p for p in h.check(T0) if p.kind == "implausible"]
    assert p.sensor == reading.sensor and p.since == T0 and p.detail.startswith(words)
    assert p.summary.startswith(f"implausible: {words}") and "firmware" not in p.summary  # the short form
    assert not h.zone_health(reading.zone, T0)


def test_saturation_value_close_to_the_previous_one_is_a_real_count(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    h.apply(flow("seg2-gate", "seg-2", T0, 4095), received_at=T0)  # nothing to compare with: benefit of doubt
    h.apply(flow("seg2-gate", "seg-2", T0 + 60, 3990), received_at=T0 + 60)
    h.apply(flow("seg2-gate", "seg-2", T0 + 120, 4095), received_at=T0 + 120)
    assert kinds(h, T0 + 120, "seg-2") == []


def test_implausible_clears_after_good_readings(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    h.apply(flow("seg2-gate", "seg-2", T0 - 60, 12), received_at=T0 - 60)
    h.apply(flow("seg2-gate", "seg-2", T0, 4095), received_at=T0)
    for i in range(1, 3):
        h.apply(flow("seg2-gate", "seg-2", T0 + 60 * i, 10 + i), received_at=T0 + 60 * i)
        assert kinds(h, T0 + 60 * i, "seg-2") == [("seg2-gate", "implausible")]
    h.apply(flow("seg2-gate", "seg-2", T0 + 180, 9), received_at=T0 + 180)
    assert kinds(h, T0 + 180, "seg-2") == [] and h.zone_health("seg-2", T0 + 180)


def zone_state(zone: str, ts: float, share: float, cap: int = 2000) -> ZoneState:
    occ = share * cap
    return ZoneState(
        zone=zone,
        ts=ts,
        occupancy=occ,
        capacity=cap,
        share=share,
        density=occ / cap,
        inflow_per_min=0.0,
        outflow_per_min=0.0,
        arrivals_today=0,
    )


def test_drifting_when_the_zone_never_empties_overnight(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    night = dt.datetime(2026, 3, 11, 0, 0, tzinfo=SH).timestamp()
    for i in range(6 * 60):  # 00:00-06:00, seg-1 stuck near 30% (a counter bias), seg-2 empties
        ts = night + 60 * i
        h.observe_zone(zone_state("seg-1", ts, 0.30 + 0.02 * ((i % 7) / 7)))
        h.observe_zone(zone_state("seg-2", ts, 0.02))
    probs = [p for p in h.check(night + 6 * 3600) if p.kind == "drifting"]
    assert [(p.sensor, p.zone) for p in probs] == [("", "seg-1")]
    assert probs[0].detail.startswith("occupancy never fell below 30% of capacity (600 / 2,000) between 02:00")
    assert "seg1-west, seg1-east" in probs[0].detail
    assert not h.zone_health("seg-1", night + 6 * 3600)
    # A zone-level problem shows against the counters that drift.
    drifting = "drifting: never below 30% of capacity overnight"
    assert h.issues(probs) == {"seg1-west": drifting, "seg1-east": drifting}
    h.observe_zone(zone_state("seg-1", night + 7 * 3600, 0.1))  # recalibrated: back near empty
    assert [p for p in h.check(night + 7 * 3600) if p.kind == "drifting"] == []


def test_a_partly_watched_night_is_not_judged(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    start = dt.datetime(2026, 3, 11, 4, 0, tzinfo=SH).timestamp()
    for i in range(120):  # only 04:00-06:00 watched
        h.observe_zone(zone_state("seg-1", start + 60 * i, 0.5))
    assert [p for p in h.check(start + 7200) if p.kind == "drifting"] == []


def test_detections_are_blue_per_zone_and_unknown_readings_counted(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    h.apply(flow("seg1-west", "seg-1", T0, 7000), received_at=T0)
    h.apply(flow("seg1-east", "seg-1", T0, -1), received_at=T0)
    h.apply(flow("ghost", "seg-1", T0, 1), received_at=T0)
    h.apply(flow("seg2-gate", "plaza", T0, 1), received_at=T0)
    assert h.rejected == {"unknown_sensor": 1, "zone_mismatch": 1}
    dets = h.detections(T0)
    assert [(d.zone, d.cause, d.level) for d in dets] == [("seg-1", "sensor", Level.IV)]
    assert dets[0].evidence == {"bad_sensors": 2.0, "sensors": 2.0, "implausible": 2.0}
    assert dets[0].message.startswith("Promenade segment 1: 2 of 2 sensors unhealthy, level unknown (not calm).")


def test_memory_is_bounded(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    for i in range(5000):
        h.apply(flow("seg2-gate", "seg-2", T0 + 60 * i, 5 + i % 3), received_at=T0 + 60 * i)
    m = h._sensors["seg2-gate"]
    # Only its last three movements are kept (fixed slots), newest first.
    assert (m.move1, m.move2, m.move3) == (T0 + 60 * 4999, T0 + 60 * 4998, T0 + 60 * 4997)


def test_zero_count_not_stuck_when_the_profile_expects_nobody() -> None:
    """Super Brand Mall at 07:00 on a weekday is closed: its counters read zero while the riverside next to it
    moves. That is not a stuck sensor."""
    site = load_site()
    h = SensorHealth(site)
    morning = dt.datetime(2026, 3, 11, 7, 0, tzinfo=SH).timestamp()
    for i in range(12):
        ts = morning + 60 * i
        h.apply(flow("sbm-c1", "super-brand-mall", ts, 0), received_at=ts)
        h.apply(flow("rs04-c1", "riverside-s04", ts, 5 + i % 3, 4), received_at=ts)
    assert [p for p in h.check(morning + 660) if p.kind == "stuck"] == []


def test_issues_join_a_sensors_problems_and_list_every_bad_sensor(mini_site: Site) -> None:
    h = SensorHealth(mini_site)
    for i in range(10):  # seg2-gate repeats itself, then falls silent
        h.apply(flow("seg2-gate", "seg-2", T0 + 60 * i, 12, 3), received_at=T0 + 60 * i)
    now = T0 + 540 + 400
    assert h.issues(h.zone_problems("seg-2", now)) == {
        "seg2-gate": "offline: no data for 7 min; stuck: reads 12 in, 3 out 10 times in a row"
    }
    assert h.issues([]) == {}
    # Long silences read in hours: a wall is read from across the room.
    assert h.issues(h.zone_problems("seg-2", T0 + 540 + 3 * 3600))["seg2-gate"].startswith(
        "offline: no data for 3 h 00 min;"
    )
