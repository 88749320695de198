"""Grader: levels by share and by density, hysteresis, min duration, instant red, holding on silence."""

from __future__ import annotations

import json

import msgspec
import pytest

from detect.grading import Grader
from domain.levels import Level
from domain.site import Site, Thresholds
from domain.values import ZoneState

# mini_site: seg-1 2000 m², capacity 2000; plaza 1000 m², capacity 1500.
# share thresholds 0.6/0.7/0.8/0.95, density 1.5/2.0/3.0/4.0, hysteresis 0.05, min_duration_s 30.


def seg(ts: float, share: float, *, density: float = 0.5, healthy: bool = True) -> ZoneState:
    return ZoneState(
        zone="seg-1",
        ts=ts,
        occupancy=share * 2000,
        capacity=2000,
        share=share,
        density=density,
        inflow_per_min=120.0,
        outflow_per_min=90.0,
        arrivals_today=5000,
        healthy=healthy,
    )


def primed(site: Site) -> Grader:
    """A grader that has already seen seg-1 calm and healthy, as in steady running."""
    g = Grader(site)
    g.grade(seg(-1000, 0.1))
    return g


def settled(g: Grader, s: ZoneState) -> Level:
    """Grade the same state twice, 30 s apart, so min_duration_s is met."""
    g.grade(s)
    later = ZoneState(**{f: getattr(s, f) for f in s.__struct_fields__ if f != "ts"}, ts=s.ts + 30)
    return g.grade(later).level


@pytest.mark.parametrize(
    ("share", "level"),
    [
        (0.3, Level.NORMAL),
        (0.59, Level.NORMAL),
        (0.6, Level.IV),
        (0.7, Level.III),
        (0.8, Level.II),
        (0.94, Level.II),
        (0.95, Level.I),
        (1.2, Level.I),
    ],
)
def test_level_by_share(mini_site: Site, share: float, level: Level) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, share)) == level
    d = g.grade(seg(60, share))
    assert d.level == level
    if level is not Level.NORMAL:
        assert d.cause == "capacity"


@pytest.mark.parametrize(
    ("density", "level"),
    [(1.0, Level.NORMAL), (1.5, Level.IV), (2.0, Level.III), (3.0, Level.II), (4.0, Level.I), (5.5, Level.I)],
)
def test_level_by_density(mini_site: Site, density: float, level: Level) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.3, density=density)) == level
    d = g.grade(seg(60, 0.3, density=density))
    if level is not Level.NORMAL:
        assert d.cause == "density"


def test_worse_of_share_and_density_wins(mini_site: Site) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.72, density=3.2)) == Level.II  # III by share, II by density
    assert g.grade(seg(60, 0.72, density=3.2)).cause == "density"
    g2 = primed(mini_site)
    assert settled(g2, seg(0, 0.85, density=1.6)) == Level.II
    assert g2.grade(seg(60, 0.85, density=1.6)).cause == "capacity"


def test_zone_thresholds_override(mini_site: Site) -> None:
    own = Thresholds(share=(0.3, 0.4, 0.5, 0.6))
    zones = tuple(
        msgspec.structs.replace(z, thresholds=own) if z.id == "seg-1" else z for z in mini_site.file.zones
    )
    site = Site(msgspec.structs.replace(mini_site.file, zones=zones))
    assert site.thresholds_for("seg-1") is own
    assert settled(primed(site), seg(0, 0.45)) == Level.III


def test_oscillating_around_80_percent_does_not_flap(mini_site: Site) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.78)) == Level.III
    levels = set()
    for i in range(200):  # ±2% around the II threshold, a sample every 5 s
        share = 0.82 if i % 2 == 0 else 0.78
        levels.add(g.grade(seg(60 + 5 * i, share)).level)
    assert levels == {Level.III}


def test_once_up_hysteresis_holds_the_level(mini_site: Site) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.82)) == Level.II
    levels = {g.grade(seg(60 + 5 * i, 0.82 if i % 2 else 0.78)).level for i in range(200)}
    assert levels == {Level.II}  # 0.78 is above 0.80 - 0.05
    # Below threshold - hysteresis for min_duration_s: it comes down.
    assert g.grade(seg(2000, 0.74)).level == Level.II
    assert g.grade(seg(2029, 0.74)).level == Level.II
    assert g.grade(seg(2030, 0.74)).level == Level.III


def test_density_hysteresis_is_relative(mini_site: Site) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.1, density=3.1)) == Level.II
    assert settled(g, seg(100, 0.1, density=2.9)) == Level.II  # above 3.0 × 0.95 = 2.85
    assert settled(g, seg(200, 0.1, density=2.8)) == Level.III


def test_min_duration_before_going_up(mini_site: Site) -> None:
    g = primed(mini_site)
    assert g.grade(seg(0, 0.85)).level == Level.NORMAL
    assert g.grade(seg(29, 0.85)).level == Level.NORMAL
    assert g.grade(seg(30, 0.85)).level == Level.II


def test_short_spike_is_not_reported(mini_site: Site) -> None:
    g = primed(mini_site)
    assert g.grade(seg(0, 0.85)).level == Level.NORMAL
    assert g.grade(seg(20, 0.4)).level == Level.NORMAL
    assert g.grade(seg(40, 0.85)).level == Level.NORMAL  # the clock restarted at the dip
    assert g.grade(seg(69, 0.85)).level == Level.NORMAL
    assert g.grade(seg(70, 0.85)).level == Level.II


def test_rising_through_levels_reports_the_level_held_long_enough(mini_site: Site) -> None:
    g = primed(mini_site)
    g.grade(seg(0, 0.65))
    g.grade(seg(20, 0.75))
    assert g.grade(seg(30, 0.82)).level == Level.IV  # ≥ IV for 30 s, ≥ III only for 10 s
    assert g.grade(seg(50, 0.82)).level == Level.III
    assert g.grade(seg(60, 0.82)).level == Level.II


def test_min_duration_before_going_down(mini_site: Site) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.85)) == Level.II
    assert g.grade(seg(100, 0.3)).level == Level.II
    assert g.grade(seg(110, 0.72)).level == Level.II  # ≤ III since 100
    assert g.grade(seg(130, 0.72)).level == Level.III  # ≤ III for 30 s; not yet NORMAL
    assert g.grade(seg(170, 0.3)).level == Level.III
    assert g.grade(seg(200, 0.3)).level == Level.NORMAL


def test_red_is_reported_at_once(mini_site: Site) -> None:
    g = primed(mini_site)
    d = g.grade(seg(0, 0.97))
    assert d.level == Level.I and d.cause == "capacity"
    g2 = primed(mini_site)
    assert g2.grade(seg(0, 0.3, density=4.2)).level == Level.I
    # Red still needs min_duration_s to come down.
    assert g2.grade(seg(10, 0.3, density=1.0)).level == Level.I
    assert g2.grade(seg(40, 0.3, density=1.0)).level == Level.NORMAL


def test_silence_does_not_resolve(mini_site: Site) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.85)) == Level.II
    for ts in range(100, 1000, 10):
        d = g.grade(seg(ts, 0.1, healthy=False))
        assert d.level == Level.II
    assert "level held" in d.message
    # Back to health: the calm must now hold min_duration_s of good data before the level drops.
    assert g.grade(seg(1000, 0.1)).level == Level.II
    assert g.grade(seg(1029, 0.1)).level == Level.II
    assert g.grade(seg(1030, 0.1)).level == Level.NORMAL


def test_unhealthy_zone_can_still_escalate(mini_site: Site) -> None:
    g = primed(mini_site)
    assert settled(g, seg(0, 0.85, healthy=False)) == Level.II


def test_sets_state_level_and_detection_fields(mini_site: Site) -> None:
    g = primed(mini_site)
    g.grade(seg(0, 0.84, density=2.1))
    s = ZoneState(
        zone="seg-1",
        ts=30,
        occupancy=1680,
        capacity=2000,
        share=0.84,
        density=2.1,
        inflow_per_min=120,
        outflow_per_min=90,
        arrivals_today=5000,
    )
    d = g.grade(s)
    assert s.level == Level.II == d.level
    assert d.zone == "seg-1" and d.ts == 30
    assert (
        d.message
        == "Promenade segment 1 at 84% of capacity (1,680 / 2,000), 2.1 p/m², inflow 120/min: II orange"
    )
    assert d.evidence == {
        "occupancy": 1680,
        "capacity": 2000,
        "share": 0.84,
        "density": 2.1,
        "inflow_per_min": 120,
        "outflow_per_min": 90,
        "healthy": 1.0,
    }
    assert d.score == pytest.approx(0.84 / 0.95)


def test_out_of_order_state_does_not_rewind(mini_site: Site) -> None:
    g = primed(mini_site)
    g.grade(seg(100, 0.85))
    assert g.grade(seg(50, 0.85)).level == Level.NORMAL
    assert g.grade(seg(130, 0.85)).level == Level.II


def test_unknown_zone(mini_site: Site) -> None:
    s = seg(0, 0.5)
    s.zone = "nowhere"
    with pytest.raises(KeyError, match="nowhere"):
        Grader(mini_site).grade(s)


def test_first_healthy_state_is_taken_at_its_level(mini_site: Site) -> None:
    g = Grader(mini_site)
    assert g.grade(seg(0, 0.1, healthy=False)).level == Level.NORMAL  # no data yet
    assert g.grade(seg(10, 0.82)).level == Level.II  # nothing to debounce against (e.g. after a restart)
    assert g.grade(seg(20, 0.3)).level == Level.II  # from here on the usual rules
    assert g.grade(seg(50, 0.3)).level == Level.NORMAL


def test_evidence_says_whether_the_zone_is_healthy(mini_site: Site) -> None:
    g = primed(mini_site)
    assert g.grade(seg(0, 0.1)).evidence["healthy"] == 1.0
    assert g.grade(seg(10, 0.1, healthy=False)).evidence["healthy"] == 0.0


def test_snapshot_round_trip(mini_site: Site) -> None:
    g = primed(mini_site)
    settled(g, seg(0, 0.85))
    g.grade(seg(100, 0.5))
    back = Grader(mini_site)
    back.from_snapshot(json.loads(json.dumps(g.to_snapshot())))
    for ts in (110, 129, 130):
        assert back.grade(seg(ts, 0.5)).level == g.grade(seg(ts, 0.5)).level
    assert back.grade(seg(131, 0.5)).level == Level.NORMAL


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2},
        [],
        {"version": 1, "zones": {"seg-1": {"level": 9}}},
        {"version": 1, "zones": {"seg-1": 1}},
    ],
)
def test_unfit_snapshot_is_refused(mini_site: Site, data: object) -> None:
    g = primed(mini_site)
    settled(g, seg(0, 0.85))
    with pytest.raises(ValueError, match="snapshot"):
        g.from_snapshot(data)  # type: ignore[arg-type]
    assert g.grade(seg(100, 0.85)).level == Level.II
