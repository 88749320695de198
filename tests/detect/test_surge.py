"""SurgeMonitor on simulated days of the mini site: warns of the NYE build-up before the riverside crosses
capacity, stays calm on a usual weekday, survives a restart and warms from stored history."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

import detect.surge.compare
import detect.surge.drift_residual
import detect.surge.excess
import detect.surge.forecast_residual
import detect.surge.monitor
import detect.surge.profile_ratio
import detect.surge.seasonal_quantile
from detect.base import Decision
from detect.registry import DETECTORS
from detect.surge.compare import (
    Realism,
    SimDay,
    compare_on_scenarios,
    episodes,
    format_table,
    pick_winner,
    run_day,
    same_kind_of_day,
    simulate,
)
from detect.surge.monitor import SurgeMonitor
from domain.levels import Level
from domain.loader import load_site
from domain.profile import CapacityProfile
from domain.site import Site
from domain.values import ZoneState
from sim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
NYE_2230 = 1798727400.0  # 31 Dec 2026 22:30 in Shanghai


@pytest.fixture(scope="module")
def lujiazui() -> Site:
    return load_site()


def simulated(site: Site) -> dict[str, list[SimDay]]:
    profile = CapacityProfile(site)
    weekday = load_scenario("weekday")
    return {
        "history": [simulate(site, same_kind_of_day(weekday, profile, k), realism=Realism()) for k in (1, 2)],
        "weekday": [simulate(site, same_kind_of_day(weekday, profile, 3), realism=Realism())],
        "nye": [simulate(site, load_scenario("nye"), realism=Realism())],
    }


@pytest.fixture(scope="module")
def days(mini_site: Site) -> dict[str, list[SimDay]]:
    """The mini site: quick, for the mechanics."""
    return simulated(mini_site)


@pytest.fixture(scope="module")
def big_days(lujiazui: Site) -> dict[str, list[SimDay]]:
    """Lujiazui: the mini site's promenade is at capacity on any NYE evening, surge or not, so the lead
    time is measured on the real site (35 zones, 10 riverside segments)."""
    return simulated(lujiazui)


def history_rows(days: list[SimDay]) -> list[tuple[str, float, float]]:
    """What the store would hand back: (zone, ts, inflow_per_min), oldest first."""
    rows: list[tuple[str, float, float]] = []
    for day in days:
        for i, t in enumerate(day.ts.tolist()):
            rows.extend((z, t, float(day.inflow[i, j])) for j, z in enumerate(day.zone_ids))
    return rows


def state(zone: str, ts: float, inflow: float, *, healthy: bool = True) -> ZoneState:
    return ZoneState(zone=zone, ts=ts, occupancy=500.0, capacity=2000, share=0.25, density=0.25,
                     inflow_per_min=inflow, outflow_per_min=10.0, arrivals_today=0, healthy=healthy)


def warmed(site: Site, days: dict[str, list[SimDay]], detector: str | None = None) -> SurgeMonitor:
    mon = SurgeMonitor(site, CapacityProfile(site), detector=detector)
    mon.warm(history_rows(days["history"]))
    return mon


def test_nye_build_up_is_flagged_well_before_the_riverside_crosses_capacity(
    lujiazui: Site, big_days: dict[str, list[SimDay]]
) -> None:
    """The default detector, warmed from two weekdays of history, warns of every riverside crossing at
    least 15 minutes ahead (the time crowd managers need to act)."""
    mon = warmed(lujiazui, big_days)
    nye = big_days["nye"][0]
    flags = run_day(mon, nye)
    crossed = [z for z in nye.crossings if lujiazui.zones[z].kind == "riverside_segment"]
    assert len(crossed) >= 8, "the NYE scenario should push most riverside segments over capacity"
    for zone in crossed:
        eps = episodes(flags[zone], gap_s=600.0)
        warning = [first for first, last in eps if first < nye.crossings[zone] <= last + 600.0]
        assert warning, f"{zone}: no warning before the crossing"
        lead_min = (nye.crossings[zone] - warning[0]) / 60.0
        assert lead_min >= 15.0, f"{zone}: warned only {lead_min:.0f} min ahead"


def test_a_usual_weekday_raises_at_most_one_alarm_in_the_whole_district(
    lujiazui: Site, big_days: dict[str, list[SimDay]]
) -> None:
    mon = warmed(lujiazui, big_days)
    flags = run_day(mon, big_days["weekday"][0])
    per_zone = {z: len(episodes(f, gap_s=600.0)) for z, f in flags.items() if f}
    assert sum(per_zone.values()) <= 1, per_zone  # 35 zones, 17 hours


def test_detection_levels_message_and_evidence(mini_site: Site) -> None:
    mon = SurgeMonitor(mini_site, CapacityProfile(mini_site), detector="profile_ratio")
    assert mon.observe(state("seg-1", NYE_2230, 40.0)) is None  # about the usual
    assert mon.observe(state("seg-1", NYE_2230, 1.0)) is None  # low flow is not a surge
    d = mon.observe(state("seg-1", NYE_2230, 72.0))
    assert d is not None and d.cause == "surge" and d.level is Level.IV and 0.9 <= d.score < 0.97
    big = mon.observe(state("seg-1", NYE_2230, 5000.0))
    assert big is not None and big.level is Level.III  # a surge alone never goes above III
    assert set(big.evidence) == {"inflow_per_min", "expected_per_min", "score"}
    assert big.evidence["inflow_per_min"] == 5000.0
    ratio = 5000.0 / big.evidence["expected_per_min"]
    assert big.message == (
        f"Promenade segment 1: inflow 5,000/min, {ratio:.1f}× the usual for 22:30 on New Year's Eve"
    )


def test_bad_and_blind_states_are_counted_not_scored(mini_site: Site) -> None:
    mon = SurgeMonitor(mini_site, CapacityProfile(mini_site))
    before = mon.to_state()
    assert mon.observe(state("seg-1", NYE_2230, 5000.0, healthy=False)) is None
    assert mon.observe(state("seg-1", NYE_2230, math.nan)) is None
    assert mon.observe(state("seg-1", NYE_2230, -3.0)) is None
    assert mon.observe(state("nowhere", NYE_2230, 3.0)) is None
    assert mon.observe(state("seg-1", math.inf, 3.0)) is None
    assert dict(mon.rejected) == {
        "unhealthy": 1, "bad_inflow": 2, "unknown_zone": 1, "bad_timestamp": 1
    }
    assert mon.to_state()["zones"] == before["zones"]  # nothing learned from any of them


def test_normal_is_the_learned_usual_else_the_profile_and_counts_nothing(mini_site: Site) -> None:
    profile = CapacityProfile(mini_site)
    plain = SurgeMonitor(mini_site, profile, detector="profile_ratio")  # learns nothing
    expected = plain.obs("seg-1", NYE_2230, 0.0)
    assert expected is not None and expected.expected is not None
    assert plain.normal("seg-1", NYE_2230) == expected.expected
    mon = SurgeMonitor(mini_site, profile)  # the default learns the zone's offset from the profile
    assert mon.normal("seg-1", NYE_2230) == pytest.approx(expected.expected)  # nothing learned yet
    for i in range(600):  # seg-1 runs a steady 20% above the profile
        ts = NYE_2230 - 600 * 60 + 60 * i
        x = mon.obs("seg-1", ts, 0.0)
        assert x is not None and x.expected is not None
        mon.observe(state("seg-1", ts, 1.2 * x.expected))
    learned = mon.normal("seg-1", NYE_2230)
    assert learned is not None and learned == pytest.approx(1.2 * expected.expected, rel=0.05)
    before = (mon.to_state(), dict(mon.rejected))
    assert mon.normal("nowhere", NYE_2230) is None and mon.normal("seg-1", math.nan) is None
    assert (mon.to_state(), dict(mon.rejected)) == before  # asking learns and counts nothing


def test_unknown_detector_and_bad_decision_are_clear_errors(mini_site: Site) -> None:
    profile = CapacityProfile(mini_site)
    with pytest.raises(ValueError, match="unknown detector 'nope'"):
        SurgeMonitor(mini_site, profile, detector="nope")
    with pytest.raises(ValueError, match="protect <= threshold"):
        SurgeMonitor(mini_site, profile, decision=Decision(threshold=0.5, protect=0.8))


def test_snapshot_round_trip_carries_on_identically(mini_site: Site, days: dict[str, list[SimDay]]) -> None:
    mon = warmed(mini_site, days)
    snap = json.loads(json.dumps(mon.to_state()))
    again = SurgeMonitor(mini_site, CapacityProfile(mini_site))
    again.from_state(snap)
    assert again.to_state() == mon.to_state()
    nye = days["nye"][0]
    assert run_day(mon, nye) == run_day(again, nye)
    assert again.to_state() == mon.to_state()


def test_snapshot_that_does_not_fit_is_refused_and_nothing_changes(mini_site: Site) -> None:
    mon = SurgeMonitor(mini_site, CapacityProfile(mini_site), detector="seasonal_quantile")
    mon.observe(state("seg-1", NYE_2230, 40.0))
    kept = mon.to_state()
    with pytest.raises(ValueError, match="version"):
        mon.from_state({"version": 99})
    other = SurgeMonitor(mini_site, CapacityProfile(mini_site), detector="drift_residual").to_state()
    with pytest.raises(ValueError, match="learned by 'drift_residual'"):
        mon.from_state(other)
    damaged = json.loads(json.dumps(kept))
    damaged["zones"]["seg-2"] = {"kind": "seasonal_quantile", "zone": "x", "tables": {}}
    with pytest.raises(ValueError):
        mon.from_state(damaged)
    assert mon.to_state() == kept
    gone = json.loads(json.dumps(kept))
    gone["zones"]["old-zone"] = gone["zones"]["seg-1"]
    mon.from_state(gone)
    assert mon.dropped_zones == ["old-zone"]


def test_warm_from_history_learns_and_counts_bad_rows(mini_site: Site, days: dict[str, list[SimDay]]) -> None:
    rows = history_rows(days["history"])
    mon = SurgeMonitor(mini_site, CapacityProfile(mini_site), detector="seasonal_quantile")
    fresh = mon.to_state()
    learned = mon.warm([*rows, ("nowhere", rows[0][1], 3.0), ("seg-1", rows[0][1], math.nan)])
    assert len(rows) * 0.95 < learned <= len(rows)  # a usual history is nearly all learned
    assert mon.rejected == {"unknown_zone": 1, "bad_inflow": 1}
    assert mon.to_state() != fresh
    # Warming is the same as having watched those days live.
    live = SurgeMonitor(mini_site, CapacityProfile(mini_site), detector="seasonal_quantile")
    for day in days["history"]:
        run_day(live, day)
    assert live.to_state()["zones"] == mon.to_state()["zones"]


def test_compare_on_scenarios_measures_every_detector(mini_site: Site) -> None:
    results = compare_on_scenarios(mini_site, train_days=1, eval_days=1, surges=["nye"])
    assert list(results) == list(DETECTORS)
    for r in results.values():
        assert r.crossings >= 2  # the mini site's two promenade segments
        assert 0 <= r.warned <= r.crossings and len(r.leads_min) == r.warned
        assert r.zone_days == 2 * len(mini_site.zones)  # one weekday + one holiday, every zone
    assert pick_winner(results) in results
    table = format_table(results)
    assert all(name in table for name in results)


@pytest.mark.parametrize(
    "module",
    [
        detect.surge.excess,
        detect.surge.profile_ratio,
        detect.surge.seasonal_quantile,
        detect.surge.forecast_residual,
        detect.surge.drift_residual,
        detect.surge.monitor,
        detect.surge.compare,
    ],
)
def test_docstring_examples(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the monitor's example loads tests/fixtures/mini_site.toml
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
