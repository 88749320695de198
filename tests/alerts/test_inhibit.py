"""Inhibition: a full zone mutes its lower neighbours' follow-on alerts (not worse ones, not far ones, no chains);
uncertainty: a sensor-health signal marks the zone's alert instead of hiding it."""

from __future__ import annotations

import doctest

import msgspec
import pytest

import alerts.inhibit
from alerts.inhibit import DEFAULT_RULES, InhibitRule, inhibitions, uncertainty
from domain.levels import Level
from domain.loader import load_site
from domain.site import Site
from domain.values import Alert, AlertState, Cause


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site()


def alert(
    i: str, zone: str, level: Level, cause: Cause, t: float = 0.0, state: AlertState = "raised", **signals: int
) -> Alert:
    return Alert(
        id=i,
        zone=zone,
        level=level,
        peak_level=level,
        cause=cause,
        state=state,
        opened_at=t,
        updated_at=t,
        signals=dict(signals),
    )


def test_capacity_inhibits_a_lower_neighbours_stall(site: Site) -> None:
    full = alert("cap", "riverside-s04", Level.II, "capacity")
    stall = alert("stall", "riverside-s03", Level.III, "stall")
    assert inhibitions([full, stall], site) == {"stall": "cap"}


@pytest.mark.parametrize("cause", ["stall", "counterflow", "forecast", "surge"])
def test_every_follow_on_cause_in_any_neighbour_kind(site: Site, cause: Cause) -> None:
    full = alert("cap", "riverside-s04", Level.I, "capacity")
    mall = alert("mall", "super-brand-mall", Level.IV, cause)  # a mall beside the segment, not a segment
    assert inhibitions([mall, full], site) == {"mall": "cap"}


def test_density_is_a_source_too(mini_site: Site) -> None:
    full = alert("d", "plaza", Level.I, "density")
    back = alert("s", "seg-1", Level.II, "counterflow")
    assert inhibitions([full, back], mini_site) == {"s": "d"}


def test_not_a_higher_or_equal_level_neighbour(site: Site) -> None:
    full = alert("cap", "riverside-s04", Level.III, "capacity")
    worse = alert("worse", "riverside-s03", Level.II, "stall")
    same = alert("same", "riverside-s05", Level.III, "counterflow")
    assert inhibitions([full, worse, same], site) == {}


def test_not_a_non_neighbour(site: Site) -> None:
    full = alert("cap", "riverside-s04", Level.I, "capacity")
    far = alert("far", "riverside-s06", Level.III, "stall")  # two segments away
    assert inhibitions([full, far], site) == {}


def test_not_causes_outside_the_rule(site: Site) -> None:
    full = alert("cap", "riverside-s04", Level.I, "capacity")
    other_full = alert("cap2", "riverside-s03", Level.III, "capacity")  # a full zone of its own
    sensor = alert("sens", "riverside-s05", Level.IV, "sensor")
    assert inhibitions([full, other_full, sensor], site) == {}


def test_follow_on_alert_is_no_source(site: Site) -> None:
    stall = alert("stall", "riverside-s04", Level.I, "stall")
    surge = alert("surge", "riverside-s03", Level.III, "surge")
    assert inhibitions([stall, surge], site) == {}


def test_resolved_and_unknown_zones_take_no_part(site: Site) -> None:
    gone = alert("cap", "riverside-s04", Level.I, "capacity", state="resolved")
    ghost = alert("ghost", "riverside-s99", Level.I, "capacity")
    stall = alert("stall", "riverside-s03", Level.III, "stall")
    assert inhibitions([gone, ghost, stall], site) == {}


def test_worst_source_is_named(site: Site) -> None:
    stall = alert("stall", "riverside-s04", Level.IV, "stall")
    left = alert("left", "riverside-s03", Level.II, "capacity", t=5)
    right = alert("right", "riverside-s05", Level.I, "density", t=9)
    mall = alert("mall", "super-brand-mall", Level.II, "capacity", t=1)
    assert inhibitions([stall, left, right, mall], site) == {"stall": "right"}
    # Same level: the one opened first; then the lower id.
    assert inhibitions([stall, left, mall], site) == {"stall": "mall"}
    tie = alert("aaa", "super-brand-mall", Level.II, "capacity", t=5)
    assert inhibitions([stall, left, tie], site) == {"stall": "aaa"}  # left and aaa: II, opened at 5


def test_result_does_not_depend_on_order(site: Site) -> None:
    alerts = [
        alert("a", "riverside-s04", Level.I, "capacity"),
        alert("b", "riverside-s03", Level.II, "stall"),
        alert("c", "riverside-s05", Level.III, "surge"),
        alert("d", "super-brand-mall", Level.IV, "forecast"),
        alert("e", "riverside-s07", Level.IV, "stall"),
    ]
    expected = {"b": "a", "c": "a", "d": "a"}
    assert inhibitions(alerts, site) == expected and inhibitions(alerts[::-1], site) == expected


def test_chain_inhibits_only_the_first_link(site: Site) -> None:
    # Custom rules: a full zone inhibits a neighbour's density alert, which would inhibit its own neighbour's stall.
    rules = (InhibitRule(source_causes=("capacity",), target_causes=("density",)), *DEFAULT_RULES)
    a = alert("A", "riverside-s01", Level.I, "capacity")
    b = alert("B", "riverside-s02", Level.II, "density")
    c = alert("C", "riverside-s03", Level.III, "stall")
    assert inhibitions([a, b, c], site, rules) == {"B": "A"}
    # Without A, B is not inhibited and may inhibit C.
    assert inhibitions([b, c], site, rules) == {"C": "B"}


def test_two_alerts_never_inhibit_each_other(site: Site) -> None:
    rules = (
        InhibitRule(source_causes=("surge",), target_causes=("stall",), only_lower=False),
        InhibitRule(source_causes=("stall",), target_causes=("surge",), only_lower=False),
    )
    surge = alert("surge", "riverside-s03", Level.II, "surge")
    stall = alert("stall", "riverside-s04", Level.II, "stall")
    assert inhibitions([surge, stall], site, rules) == {}
    # One way only: the surge mutes the stall whatever their levels.
    assert inhibitions([surge, stall], site, rules[:1]) == {"stall": "surge"}


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match=r"InhibitRule.source_causes is empty: list at least one of capacity"):
        InhibitRule(source_causes=(), target_causes=("stall",))
    with pytest.raises(ValueError, match=r"unknown cause\(s\) \['crowd'\]: use any of capacity, density"):
        InhibitRule(source_causes=("capacity",), target_causes=("crowd",))  # type: ignore[arg-type]
    with pytest.raises(msgspec.ValidationError, match="scop"):
        msgspec.convert({"source_causes": ["capacity"], "target_causes": ["stall"], "scop": "zone"}, InhibitRule)


def test_uncertain_when_a_sensor_signal_is_active() -> None:
    a = alert("a", "riverside-s03", Level.II, "capacity", capacity=3, sensor=2)
    assert uncertainty(a) == (
        True,
        "Sensor health in riverside-s03 is at III yellow: the numbers behind this II orange capacity alert may be "
        "wrong; check by camera or on the ground.",
    )
    flag, why = uncertainty(alert("b", "plaza", Level.III, "stall", sensor=1))
    assert flag and "at IV blue" in why and "III yellow stall alert" in why


def test_certain_without_an_active_sensor_signal() -> None:
    assert uncertainty(alert("a", "riverside-s03", Level.II, "capacity", capacity=3)) == (False, "")
    assert uncertainty(alert("a", "riverside-s03", Level.II, "capacity", sensor=0)) == (False, "")


def test_the_sensor_alert_itself_is_not_uncertain() -> None:
    assert uncertainty(alert("s", "riverside-s03", Level.III, "sensor", sensor=2)) == (False, "")


def test_an_out_of_range_sensor_grade_reads_as_the_worst() -> None:
    flag, why = uncertainty(alert("a", "riverside-s03", Level.II, "surge", sensor=9))
    assert flag and "is at I red" in why


def test_docstring_examples() -> None:
    assert doctest.testmod(alerts.inhibit).failed == 0
