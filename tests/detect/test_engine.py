"""DetectionEngine: the measured level, forecasts and signals combined into one detection per zone."""

from __future__ import annotations

import json
import random

import pytest

from alerts.lifecycle import AlertBook
from detect.engine import DetectionEngine
from domain.levels import Level
from domain.site import Site
from domain.values import Detection, Reading

T0 = 1_798_732_800.0 - 3 * 3600  # 2026-12-31 21:00 +08:00


def flow(zone: str, sensor: str, ts: float, inflow: int, outflow: int, seq: int) -> Reading:
    return Reading(
        sensor=sensor, zone=zone, kind="flow", ts=ts, seq=seq, interval_s=60.0, inflow=inflow, outflow=outflow
    )


def feed_ramp(eng: DetectionEngine, minutes: int, start_occ: float, per_min: float) -> list[list[Detection]]:
    """seg-1 (capacity 2000) filling at `per_min`; every sensor of the mini site keeps reporting."""
    out = []
    rnd = random.Random(7)  # real counts jitter; constant ones are (rightly) called stuck by sensor health
    for m in range(minutes):
        ts = T0 + 60 * (m + 1)
        seq = m + 1
        j = rnd.randint(-3, 3)
        # seg-1 has no camera in the mini site: its counters alone carry the ramp of `per_min` a minute.
        eng.apply(flow("seg-1", "seg1-west", ts, int(per_min) + 20 + j, 20 + j, seq), ts)
        k = rnd.randint(3, 9)
        eng.apply(flow("seg-1", "seg1-east", ts, k, k, seq), ts)
        eng.apply(flow("seg-2", "seg2-gate", ts, 10 + j, 10 + j, seq), ts)
        eng.apply(flow("plaza", "plaza-gate", ts, 12 + j, 12 + j, seq), ts)
        eng.apply(Reading(sensor="plaza-cam", zone="plaza", kind="density", ts=ts, seq=seq, density=0.2 + j / 100), ts)
        _, dets = eng.tick(ts)
        out.append(dets)
    return out


def test_one_detection_per_zone_every_tick(mini_site: Site) -> None:
    eng = DetectionEngine(mini_site)
    for dets in feed_ramp(eng, 5, 0, 10):
        assert sorted(d.zone for d in dets) == sorted(mini_site.zones)


def test_forecast_warns_before_the_measured_level_and_alert_stays_one(mini_site: Site) -> None:
    eng = DetectionEngine(mini_site)
    book = AlertBook(mini_site)
    ticks = feed_ramp(eng, 45, 0, 42)  # 42 people/min into a 2000-person segment: full in ~48 min
    first_forecast = next(
        i for i, dets in enumerate(ticks) for d in dets if d.zone == "seg-1" and d.cause == "forecast"
    )
    first_measured_red = next(
        (
            i
            for i, dets in enumerate(ticks)
            for d in dets
            if d.zone == "seg-1" and d.cause == "capacity" and d.level == Level.I
        ),
        len(ticks),
    )
    assert first_forecast < first_measured_red
    ids = set()
    for dets in ticks:
        for a in book.observe(dets):
            if a.zone == "seg-1":
                ids.add(a.id)
    assert len(ids) == 1, "forecast, then measured levels, must update one alert for the segment"


def test_silent_zone_is_unhealthy_and_not_calm(mini_site: Site) -> None:
    eng = DetectionEngine(mini_site)
    feed_ramp(eng, 5, 0, 10)
    # Ten minutes without a single reading from anyone.
    states, dets = eng.tick(T0 + 15 * 60)
    by_zone = {s.zone: s for s in states}
    assert not by_zone["seg-1"].healthy and not by_zone["plaza"].healthy
    causes = {d.zone: d.cause for d in dets}
    assert causes["seg-1"] == "sensor" and dets[0].level >= Level.IV
    # The wall's health panel says why, per sensor; the normal inflow is still known, the forecast is not.
    seg1 = by_zone["seg-1"]
    assert seg1.sensor_issues == {
        "seg1-west": "offline: no data for 10 min",
        "seg1-east": "offline: no data for 10 min",
    }
    assert seg1.expected_inflow_per_min == eng.surge.normal("seg-1", T0 + 15 * 60)
    assert seg1.expected_inflow_per_min is not None and seg1.outlook == []


def test_a_zone_never_heard_from_lists_its_sensors(mini_site: Site) -> None:
    eng = DetectionEngine(mini_site)
    states, _ = eng.tick(T0)
    by_zone = {s.zone: s for s in states}
    assert not by_zone["plaza"].healthy
    assert by_zone["plaza"].sensor_issues == {"plaza-gate": "no data yet", "plaza-cam": "no data yet"}


def test_states_carry_the_normal_inflow_and_the_outlook(mini_site: Site) -> None:
    young = DetectionEngine(mini_site)
    feed_ramp(young, 1, 0, 42)
    first, _ = young.tick(T0 + 61)
    assert all(s.outlook == [] for s in first)  # one sample: no trend to extrapolate yet
    eng = DetectionEngine(mini_site)
    feed_ramp(eng, 20, 0, 42)
    states, _ = eng.tick(T0 + 20 * 60 + 1)
    seg1 = next(s for s in states if s.zone == "seg-1")
    assert seg1.healthy and seg1.sensor_issues == {}
    assert seg1.expected_inflow_per_min == eng.surge.normal("seg-1", seg1.ts)
    assert [h for h, *_ in seg1.outlook] == [5, 10, 15, 20, 30]
    occ = [o for _, o, _, _ in seg1.outlook]
    assert occ == sorted(occ) and occ[0] > seg1.occupancy  # filling at 42 a minute
    assert occ[-1] - occ[0] == pytest.approx(25 * 42, rel=0.2)
    assert all(lo <= o <= hi for _, o, lo, hi in seg1.outlook)
    assert seg1.outlook[-1][3] - seg1.outlook[-1][2] > seg1.outlook[0][3] - seg1.outlook[0][2]  # wider ahead


def test_hold_keeps_a_signal_briefly_then_lets_go(mini_site: Site) -> None:
    eng = DetectionEngine(mini_site, hold_s=60)
    now = T0 + 600
    forced = Detection(zone="seg-2", ts=now, level=Level.III, cause="stall", message="test stall")
    eng._held["seg-2"]["stall"] = (forced, now + 60)
    _, dets = eng.tick(now + 30)
    assert next(d for d in dets if d.zone == "seg-2").cause == "stall"
    _, dets = eng.tick(now + 90)
    assert next(d for d in dets if d.zone == "seg-2").cause != "stall"


def test_snapshot_round_trip_gives_the_same_next_tick(mini_site: Site) -> None:
    a = DetectionEngine(mini_site)
    feed_ramp(a, 20, 0, 30)
    snap = json.loads(json.dumps(a.to_snapshot()))
    b = DetectionEngine(mini_site)
    b.from_snapshot(snap)
    now = T0 + 21 * 60
    sa, da = a.tick(now)
    sb, db = b.tick(now)
    assert [(s.zone, round(s.occupancy, 6), s.level) for s in sa] == [
        (s.zone, round(s.occupancy, 6), s.level) for s in sb
    ]
    assert [(d.zone, d.level, d.cause) for d in da] == [(d.zone, d.level, d.cause) for d in db]


def test_a_blind_zone_shows_no_forecast_text_or_eta(mini_site: Site) -> None:
    """The strip and the phones read forecast and eta_red_min: from before the data went bad they mislead."""
    eng = DetectionEngine(mini_site)
    feed_ramp(eng, 25, 0, 60)  # seg-1 filling fast: a forecast is on
    states, _ = eng.tick(T0 + 25 * 60 + 1)
    seg1 = next(s for s in states if s.zone == "seg-1")
    assert seg1.healthy and seg1.forecast != ""
    states, _ = eng.tick(T0 + 40 * 60)  # then fifteen minutes of silence
    seg1 = next(s for s in states if s.zone == "seg-1")
    assert not seg1.healthy
    assert (seg1.forecast, seg1.eta_red_min, seg1.outlook) == ("", None, [])
