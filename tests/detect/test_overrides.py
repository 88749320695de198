"""Planned events and emergency mode in detection: thresholds, planned flow, ETAs, messages and signals."""

from __future__ import annotations

import doctest
import json
import math
import random
from pathlib import Path

import pytest

import detect.overrides
from alerts.model import EmergencyMode, PlannedEvent
from detect.engine import DetectionEngine
from detect.forecast import CapacityForecaster
from detect.grading import Grader
from detect.overrides import Overrides
from detect.surge.monitor import SurgeMonitor
from domain.levels import Level
from domain.loader import load_site
from domain.profile import CapacityProfile
from domain.site import Site
from domain.values import Reading, ZoneState

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_798_732_800.0 - 3 * 3600  # 2026-12-31 21:00 +08:00
NYE_2215 = 1_798_726_500.0  # 2026-12-31 22:15 +08:00, the start of a 15-minute slot

# mini_site: one grid "riverside"; seg-1 / seg-2 capacity 2000 (2000 m²), plaza 1500.
# share thresholds 0.6/0.7/0.8/0.95, density 1.5/2.0/3.0/4.0, hysteresis 0.05, min_duration_s 30.


def event(
    zones: tuple[str, ...] = ("seg-1",),
    *,
    starts_at: float = T0,
    ends_at: float = T0 + 3600,
    flow_factor: float = 1.0,
    share: tuple[float, float, float, float] | None = None,
    density: tuple[float, float, float, float] | None = None,
    name: str = "NYE fireworks",
) -> PlannedEvent:
    return PlannedEvent(
        id="ev-1",
        name=name,
        zones=zones,
        starts_at=starts_at,
        ends_at=ends_at,
        flow_factor=flow_factor,
        reason="planned show",
        created_by="operator-1",
        created_at=T0 - 86_400,
        share=share,
        density=density,
    )


def emergency(scope: str) -> EmergencyMode:
    return EmergencyMode(scope=scope, since=T0, by="command-1", reason="crowd building on the Bund")


def state(zone: str, ts: float, share: float, capacity: int = 2000, *, inflow: float = 60.0) -> ZoneState:
    return ZoneState(
        zone=zone,
        ts=ts,
        occupancy=share * capacity,
        capacity=capacity,
        share=share,
        density=0.3,
        inflow_per_min=inflow,
        outflow_per_min=40.0,
        arrivals_today=1000,
    )


# ---- thresholds -------------------------------------------------------------------------------------


def test_event_red_threshold_keeps_96_percent_from_red_only_inside_the_window(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    ov.set_events([event(share=(0.7, 0.8, 0.9, 0.98))])
    g = Grader(mini_site, thresholds_for=ov.thresholds_for)
    inside = [g.grade(state("seg-1", T0 + m * 60, 0.96)).level for m in range(0, 60, 5)]
    assert set(inside) == {Level.II}, "96% is orange while the event's red is 98%"
    # seg-2 is not in the event: the site's red (95%) applies to it meanwhile.
    assert Grader(mini_site, thresholds_for=ov.thresholds_for).grade(state("seg-2", T0 + 600, 0.96)).level is Level.I
    # The window is [starts_at, ends_at): at ends_at the site's thresholds are back, and red is at once.
    after = g.grade(state("seg-1", T0 + 3600, 0.96))
    assert after.level is Level.I and after.cause == "capacity"


def test_emergency_on_a_grid_tightens_its_zones_only_and_district_covers_all() -> None:
    site = load_site()  # the default Lujiazui site: several grids
    zones = list(site.zones.values())
    a = zones[0]
    b = next(z for z in zones if z.grid != a.grid)
    ov = Overrides(site, emergency_tighten=0.9)

    def level(zone_id: str) -> Level:
        """A fresh grader takes a zone's first healthy state at its level at once (no debounce)."""
        z = site.zones[zone_id]
        blue = site.thresholds_for(z).share_for(Level.IV)
        share = blue * 0.95  # below the normal IV threshold, above the tightened one (0.9 x)
        return Grader(site, thresholds_for=ov.thresholds_for).grade(state(z.id, T0, share, z.capacity)).level

    assert (level(a.id), level(b.id)) == (Level.NORMAL, Level.NORMAL)
    ov.set_emergency([emergency(a.grid)])
    assert ov.in_emergency(a.id) and not ov.in_emergency(b.id)
    assert (level(a.id), level(b.id)) == (Level.IV, Level.NORMAL)
    ov.set_emergency([emergency("district")])
    assert all(ov.in_emergency(z) for z in site.zones)
    assert (level(a.id), level(b.id)) == (Level.IV, Level.IV)
    ov.set_emergency([])  # switching back is explicit
    assert (level(a.id), level(b.id)) == (Level.NORMAL, Level.NORMAL)


def test_emergency_tightens_an_events_thresholds_too(mini_site: Site) -> None:
    ov = Overrides(mini_site, emergency_tighten=0.8)
    ov.set_events([event(share=(0.7, 0.8, 0.9, 1.0), density=(2.0, 2.5, 3.5, 4.5))])
    ov.set_emergency([emergency("riverside")])
    t = ov.thresholds_for("seg-1", T0 + 60)
    assert [round(x, 6) for x in t.share] == [0.56, 0.64, 0.72, 0.8]
    assert [round(x, 6) for x in t.density] == [1.6, 2.0, 2.8, 3.6]
    assert t.hysteresis == mini_site.thresholds.hysteresis
    # Outside the window, emergency tightens the site's own thresholds.
    assert [round(x, 6) for x in ov.thresholds_for("seg-1", T0 + 3600).share] == [0.48, 0.56, 0.64, 0.76]


def test_emergency_halves_min_duration_so_levels_rise_sooner(mini_site: Site) -> None:
    normal = DetectionEngine(mini_site)
    urgent = DetectionEngine(mini_site)
    urgent.overrides.set_emergency([emergency("district")])
    assert urgent.overrides.thresholds_for("seg-1", T0).min_duration_s == 15.0
    for eng in (normal, urgent):
        eng.grader.grade(state("seg-1", T0, 0.2))  # primed calm
        eng.grader.grade(state("seg-1", T0 + 10, 0.71))  # III under either thresholds (0.7..0.8 / 0.63..0.72)
    assert normal.grader.grade(state("seg-1", T0 + 25, 0.71)).level is Level.NORMAL
    assert urgent.grader.grade(state("seg-1", T0 + 25, 0.71)).level is Level.III
    assert normal.grader.grade(state("seg-1", T0 + 40, 0.71)).level is Level.III


def test_overlapping_events_take_the_strictest_thresholds_and_multiply_flow(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    loose = event(share=(0.7, 0.8, 0.9, 1.0), flow_factor=3.0)
    strict = event(share=(0.65, 0.85, 0.88, 0.97), flow_factor=1.5, name="marathon", starts_at=T0 + 600)
    ov.set_events([loose, strict])
    assert ov.thresholds_for("seg-1", T0 + 60).share == (0.7, 0.8, 0.9, 1.0)
    assert ov.flow_factor("seg-1", T0 + 60) == 3.0
    assert ov.thresholds_for("seg-1", T0 + 900).share == (0.65, 0.8, 0.88, 0.97)
    assert ov.flow_factor("seg-1", T0 + 900) == 4.5
    assert ov.flow_factor("seg-2", T0 + 900) == 1.0
    assert ov.thresholds_for("seg-1", T0 + 3600) is mini_site.thresholds_for("seg-1")


# ---- planned flow and surges ------------------------------------------------------------------------


def test_planned_flow_factor_keeps_a_3x_inflow_from_being_a_surge_until_the_event_ends(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    ov.set_events([event(starts_at=NYE_2215 - 3600, ends_at=NYE_2215 + 60, flow_factor=3.0)])
    eng = DetectionEngine(mini_site, surge_detector="profile_ratio", overrides=ov)
    # 120/min is about 3.1x the usual for seg-1 at 22:15 on New Year's Eve (see detect/surge/monitor.py).
    assert eng.surge.observe(state("seg-1", NYE_2215, 0.45, inflow=120.0)) is None
    # An unplanned excess on top of the planned crowd is still a surge.
    on_top = eng.surge.observe(state("seg-1", NYE_2215, 0.45, inflow=360.0))
    assert on_top is not None and on_top.evidence["flow_factor"] == 3.0
    assert "the planned (x3 the usual)" in on_top.message
    after = eng.surge.observe(state("seg-1", NYE_2215 + 60, 0.45, inflow=120.0))
    assert after is not None and after.cause == "surge" and after.level >= Level.IV
    assert "flow_factor" not in after.evidence


def test_normal_inflow_is_the_planned_one_during_an_event(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    ov.set_events([event(starts_at=NYE_2215 - 3600, ends_at=NYE_2215 + 60, flow_factor=3.0)])
    eng = DetectionEngine(mini_site, overrides=ov)
    ctl = DetectionEngine(mini_site)
    usual = ctl.surge.normal("seg-1", NYE_2215)
    assert usual is not None and usual > 0
    assert eng.surge.normal("seg-1", NYE_2215) == pytest.approx(3.0 * usual)  # the chart shows the plan
    assert eng.surge.normal("seg-2", NYE_2215) == ctl.surge.normal("seg-2", NYE_2215)  # not in the event
    assert eng.surge.normal("seg-1", NYE_2215 + 120) == ctl.surge.normal("seg-1", NYE_2215 + 120)  # over


def test_surge_model_does_not_learn_an_events_flow_as_normal(mini_site: Site) -> None:
    profile = CapacityProfile(mini_site)
    ov = Overrides(mini_site)
    ov.set_events([event(starts_at=NYE_2215 - 3600, ends_at=NYE_2215 + 3600, flow_factor=3.0)])
    mon = SurgeMonitor(mini_site, profile, flow_factor=ov.flow_factor)  # the default, learning detector
    before = json.dumps(mon.detector("seg-1").to_state(), sort_keys=True)
    for i in range(30):
        assert mon.observe(state("seg-1", NYE_2215 + 60 * i, 0.45, inflow=120.0)) is None
    assert json.dumps(mon.detector("seg-1").to_state(), sort_keys=True) == before
    assert mon.warm([("seg-1", NYE_2215 + 60 * i, 120.0) for i in range(5)]) == 0
    # The control: the same zone and inflow without an event is learned (it scores as usual: nothing planned).
    ctl = SurgeMonitor(mini_site, profile, flow_factor=Overrides(mini_site).flow_factor)
    ctl.observe(state("seg-1", NYE_2215, 0.45, inflow=40.0))
    assert json.dumps(ctl.detector("seg-1").to_state(), sort_keys=True) != before


# ---- forecasts --------------------------------------------------------------------------------------


def ramp(fc: CapacityForecaster) -> None:
    """seg-1 rising by 20 people a minute from 800 to 1,100 over 15 minutes (as in detect/forecast.py)."""
    for i in range(31):
        occ = 800 + 20 * i / 2
        fc.update(state("seg-1", T0 + 30 * i, occ / 2000))


def test_eta_to_red_respects_an_events_red_and_emergency_tightening(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    fc = CapacityForecaster(mini_site, thresholds_for=ov.thresholds_for)
    ramp(fc)
    assert fc.eta("seg-1", Level.I) is None  # 95% = 1,900 is 40 min away: beyond the horizon
    assert fc.eta("seg-1", Level.II) == pytest.approx(25.0, abs=0.2)  # 80% = 1,600
    ov.set_events([event(share=(0.5, 0.6, 0.7, 0.8))])  # red at 80% = 1,600 during the event
    assert fc.eta("seg-1", Level.I) == pytest.approx(25.0, abs=0.2)
    ov.set_events([])
    ov.set_emergency([emergency("riverside")])  # orange at 0.8 x 0.9 = 72% = 1,440
    assert fc.eta("seg-1", Level.II) == pytest.approx(17.0, abs=0.2)


# ---- the engine: messages and signals ---------------------------------------------------------------


def feed(eng: DetectionEngine, minutes: int, seg1_in: int, *, start: int = 0) -> None:
    """Every sensor of the mini site reports each minute; seg-1's west counter lets `seg1_in` people in."""
    rnd = random.Random(11 + start)  # live counts jitter; constant ones are (rightly) called stuck
    for m in range(start, start + minutes):
        ts = T0 + 60 * (m + 1)
        j = rnd.randint(-3, 3)
        k = rnd.randint(3, 9)
        for r in (
            Reading(sensor="seg1-west", zone="seg-1", kind="flow", ts=ts, seq=m + 1, interval_s=60.0,
                    inflow=seg1_in + 20 + j, outflow=20 + j),
            Reading(sensor="seg1-east", zone="seg-1", kind="flow", ts=ts, seq=m + 1, interval_s=60.0,
                    inflow=k, outflow=k),
            Reading(sensor="seg2-gate", zone="seg-2", kind="flow", ts=ts, seq=m + 1, interval_s=60.0,
                    inflow=10 + j, outflow=10 + j),
            Reading(sensor="plaza-gate", zone="plaza", kind="flow", ts=ts, seq=m + 1, interval_s=60.0,
                    inflow=12 + j, outflow=12 + j),
            Reading(sensor="plaza-cam", zone="plaza", kind="density", ts=ts, seq=m + 1, density=0.2 + j / 100),
        ):  # fmt: skip
            eng.apply(r, ts)
        eng.tick(ts)


def test_signals_list_a_sensor_signal_beside_the_capacity_level(mini_site: Site) -> None:
    eng = DetectionEngine(mini_site)
    feed(eng, 10, 140)  # seg-1 fills to about 1,400 people (70%)
    now = T0 + 11 * 60
    eng.apply(Reading(sensor="seg1-east", zone="seg-1", kind="status", ts=now, seq=99, status="fault"), now)
    states, dets = eng.tick(now)
    seg1 = next(d for d in dets if d.zone == "seg-1")
    measured = next(s for s in states if s.zone == "seg-1")
    assert 0.7 <= measured.share < 0.8 and not measured.healthy
    assert seg1.signals["sensor"] == int(Level.IV)
    assert seg1.signals["capacity"] == int(Level.III)
    # The rise also makes a forecast signal: whichever is reported is listed, at the worst level of them all.
    assert seg1.signals[seg1.cause] == int(seg1.level) == max(seg1.signals.values())
    calm = next(d for d in dets if d.zone == "seg-2")
    assert calm.level is Level.NORMAL and calm.signals == {}


def test_engine_messages_name_the_active_override(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    ov.set_events([event(flow_factor=3.0, share=(0.7, 0.8, 0.9, 0.98), ends_at=T0 + 3.5 * 3600)])
    eng = DetectionEngine(mini_site, overrides=ov)
    assert eng.overrides is ov
    feed(eng, 3, 10)
    _, dets = eng.tick(T0 + 4 * 60)
    msg = {d.zone: d.message for d in dets}
    assert msg["seg-1"].endswith("; event 'NYE fireworks' until 00:30: expected flow x3, red at 98%")
    assert "event" not in msg["seg-2"]
    eng.overrides.set_emergency([emergency("district")])
    _, dets = eng.tick(T0 + 4 * 60 + 5)
    msg = {d.zone: d.message for d in dets}
    assert msg["seg-1"].endswith("red at 98%; emergency mode (district)")
    assert msg["plaza"].endswith("; emergency mode (district)")


def test_engine_snapshot_format_is_unchanged_by_overrides(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    ov.set_events([event(flow_factor=3.0)])
    ov.set_emergency([emergency("district")])
    eng = DetectionEngine(mini_site, overrides=ov)
    feed(eng, 3, 10)
    snap = eng.to_snapshot()
    assert set(snap) == {"tracker", "grader", "surge", "forecast", "held"}
    plain = DetectionEngine(mini_site)
    plain.from_snapshot(json.loads(json.dumps(snap)))
    assert plain.overrides.events == () and plain.overrides.emergency == ()


# ---- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0.0, -0.5, 1.01, math.nan, math.inf])
def test_emergency_tighten_outside_0_1_is_refused(mini_site: Site, k: float) -> None:
    with pytest.raises(ValueError, match=r"emergency_tighten must be within \(0, 1\]"):
        Overrides(mini_site, emergency_tighten=k)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (event(zones=("seg-9",)), r"zones 'seg-9' that site 'mini' .* does not have"),
        (event(zones=()), "names no zones"),
        (event(ends_at=T0), "ends_at .* must be a time after starts_at"),
        (event(flow_factor=0.0), "flow_factor must be a positive number"),
        (event(flow_factor=math.nan), "flow_factor must be a positive number"),
        (event(share=(0.7, 0.8, 0.8, 0.98)), "share thresholds .* must increase from IV blue to I red"),
        (event(share=(60, 70, 80, 95)), r"must be within \(0, 1.5\]: fractions of capacity"),
        (event(density=(2.0, 1.0, 3.0, 4.0)), "density thresholds .* must increase"),
        (event(density=(2.0, 3.0, 4.0, math.inf)), r"must be within \(0, 10\]: people per m²"),
    ],
)
def test_unusable_events_are_refused_and_the_previous_ones_stay(mini_site: Site, bad: PlannedEvent, match: str) -> None:
    ov = Overrides(mini_site)
    good = event(share=(0.7, 0.8, 0.9, 0.98))
    ov.set_events([good])
    with pytest.raises(ValueError, match=match):
        ov.set_events([event(name="ok", zones=("seg-2",)), bad])
    assert ov.events == (good,)
    assert ov.flow_factor("seg-2", T0 + 60) == 1.0 and ov.thresholds_for("seg-1", T0 + 60).share[-1] == 0.98


def test_bad_emergency_scope_unknown_zone_and_foreign_site_are_clear_errors(mini_site: Site) -> None:
    ov = Overrides(mini_site)
    ov.set_emergency([emergency("riverside")])
    with pytest.raises(ValueError, match=r"scope 'binjiang' is neither 'district' nor a grid .* grids: riverside"):
        ov.set_emergency([emergency("binjiang")])
    assert ov.in_emergency("seg-1"), "a refused list leaves the previous modes in force"
    with pytest.raises(KeyError, match="zone 'seg-9' is not in site 'mini'"):
        ov.thresholds_for("seg-9", T0)
    with pytest.raises(ValueError, match="overrides are for site 'mini'"):
        DetectionEngine(load_site(), overrides=ov)


def test_docstring_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples load tests/fixtures/mini_site.toml
    result = doctest.testmod(detect.overrides, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
