"""Silences: strict matcher validation with helpful messages, matching (max_level included), activity, expiry."""

from __future__ import annotations

import doctest
from typing import Any

import pytest

import alerts.silence
from alerts.model import Silence
from alerts.silence import MATCHER_KEYS, expired, matches, silenced_by, validate_matchers
from domain.levels import Level
from domain.loader import load_site
from domain.site import Site
from domain.values import Alert, Cause


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site()


def silence(
    i: str,
    matchers: dict[str, str],
    starts_at: float = 0.0,
    ends_at: float = 3600.0,
    *,
    max_level: Level = Level.I,
    created_at: float = 0.0,
    ended_at: float | None = None,
) -> Silence:
    return Silence(
        id=i,
        matchers=matchers,
        starts_at=starts_at,
        ends_at=ends_at,
        reason="fireworks",
        created_by="op1",
        created_at=created_at,
        ended_at=ended_at,
        ended_by="op1" if ended_at is not None else "",
        max_level=max_level,
    )


def alert(zone: str, level: Level = Level.III, cause: Cause = "capacity", grid: str = "") -> Alert:
    return Alert(
        id=f"a-{zone}",
        zone=zone,
        level=level,
        peak_level=level,
        cause=cause,
        state="raised",
        opened_at=0.0,
        updated_at=0.0,
        grid=grid,
    )


def problem(matchers: dict[str, Any], site: Site) -> str:
    with pytest.raises(ValueError) as e:
        validate_matchers(matchers, site)
    return str(e.value)


# ---- validation -----------------------------------------------------------------------------------------


def test_valid_matchers_come_back_stripped(site: Site) -> None:
    m = {"zone": " riverside-s03 ", "grid": "riverside-belt", "micro_grid": "rsb-02-west", "cause": "stall"}
    assert validate_matchers({**m, "kind": "riverside_segment"}, site) == {
        "zone": "riverside-s03",
        "grid": "riverside-belt",
        "micro_grid": "rsb-02-west",
        "cause": "stall",
        "kind": "riverside_segment",
    }
    assert MATCHER_KEYS == ("zone", "grid", "micro_grid", "cause", "kind")


def test_empty_matchers_would_silence_everything(site: Site) -> None:
    msg = problem({}, site)
    assert "would silence every alert in the district" in msg
    assert "give at least one of zone, grid, micro_grid, cause, kind" in msg


def test_unknown_key_lists_allowed_keys(site: Site) -> None:
    assert problem({"zon": "riverside-s03"}, site) == (
        "Silence matchers: unknown matcher key 'zon' "
        "(did you mean 'zone'? allowed: zone, grid, micro_grid, cause, kind)"
    )


def test_unknown_zone_suggests_close_ids(site: Site) -> None:
    msg = problem({"zone": "riverside-s3"}, site)
    assert msg.startswith("Silence matchers: unknown zone 'riverside-s3' (did you mean 'riverside-s03'")


def test_unknown_zone_without_close_match_points_at_the_site_file(site: Site) -> None:
    msg = problem({"zone": "nowhere-at-all"}, site)
    assert f"no close match among the {len(site.zones)} zone ids in the site file {site.path}" in msg


def test_unknown_cause_and_kind_list_all_values(site: Site) -> None:
    assert problem({"cause": "Capacity"}, site) == (
        "Silence matchers: unknown cause 'Capacity' (did you mean 'capacity'? "
        "allowed: capacity, density, surge, forecast, stall, counterflow, sensor)"
    )
    msg = problem({"kind": "plazza"}, site)
    assert "unknown zone kind 'plazza' (did you mean 'plaza'? allowed: riverside_segment, plaza, bridge" in msg


def test_unknown_grid_and_micro_grid(site: Site) -> None:
    assert "unknown grid 'riverside' (did you mean 'riverside-belt'? allowed: " in problem({"grid": "riverside"}, site)
    assert "unknown micro-grid 'rsb-01' (did you mean 'rsb-01-dongchang'" in problem({"micro_grid": "rsb-01"}, site)


@pytest.mark.parametrize("value", ["", "  ", 3, None])
def test_value_must_be_text(site: Site, value: object) -> None:
    assert f"matcher 'cause' needs a non-empty text value, got {value!r}" in problem({"cause": value}, site)


def test_contradictory_matchers_would_match_nothing(site: Site) -> None:
    msg = problem({"zone": "riverside-s03", "grid": "finance-city"}, site)
    assert "zone 'riverside-s03' has grid 'riverside-belt', not 'finance-city': this silence would match nothing" in msg
    assert "has kind 'riverside_segment', not 'plaza'" in problem({"zone": "riverside-s03", "kind": "plaza"}, site)
    assert "has micro_grid 'rsb-02-west', not 'rsb-01-dongchang'" in problem(
        {"zone": "riverside-s03", "micro_grid": "rsb-01-dongchang"}, site
    )
    assert "micro_grid 'rsb-01-dongchang' is in grid 'riverside-belt', not 'finance-city'" in problem(
        {"micro_grid": "rsb-01-dongchang", "grid": "finance-city"}, site
    )


def test_every_problem_is_reported_at_once(site: Site) -> None:
    msg = problem({"zone": "riverside-s99", "cause": "crowd", "colour": "red"}, site)
    assert "unknown zone 'riverside-s99'" in msg and "unknown cause 'crowd'" in msg
    assert "unknown matcher key 'colour'" in msg


def test_mini_site_ids(mini_site: Site) -> None:
    assert validate_matchers({"micro_grid": "rs-01", "kind": "riverside_segment"}, mini_site) == {
        "micro_grid": "rs-01",
        "kind": "riverside_segment",
    }
    assert "allowed: plaza, seg-1, seg-2" in problem({"zone": "riverside-s03"}, mini_site)


# ---- matching -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "hit"),
    [
        ("zone", "riverside-s03", True),
        ("zone", "riverside-s04", False),
        ("grid", "riverside-belt", True),  # taken from the site: the alert's own grid field is empty
        ("grid", "finance-city", False),
        ("micro_grid", "rsb-02-west", True),
        ("micro_grid", "rsb-01-dongchang", False),
        ("cause", "stall", True),
        ("cause", "capacity", False),
        ("kind", "riverside_segment", True),
        ("kind", "plaza", False),
    ],
)
def test_each_matcher(site: Site, key: str, value: str, hit: bool) -> None:
    assert matches(silence("s", {key: value}), alert("riverside-s03", cause="stall"), site) is hit


def test_all_matchers_must_hold(site: Site) -> None:
    s = silence("s", {"grid": "riverside-belt", "cause": "stall"})
    assert matches(s, alert("riverside-s05", cause="stall"), site)
    assert not matches(s, alert("riverside-s05", cause="surge"), site)
    assert not matches(s, alert("pearl-tower-plaza", cause="stall"), site)


def test_a_worse_alert_than_max_level_gets_through(site: Site) -> None:
    s = silence("s", {"kind": "riverside_segment"}, max_level=Level.III)
    assert matches(s, alert("riverside-s01", Level.IV), site)
    assert matches(s, alert("riverside-s01", Level.III), site)
    assert not matches(s, alert("riverside-s01", Level.II), site)
    assert not matches(s, alert("riverside-s01", Level.I), site)


def test_a_silence_that_cannot_be_understood_matches_nothing(site: Site) -> None:
    assert not matches(silence("s", {}), alert("riverside-s01"), site)
    assert not matches(silence("s", {"colour": "blue"}), alert("riverside-s01"), site)


def test_alert_for_a_zone_not_in_the_site(site: Site) -> None:
    gone = alert("old-zone", grid="riverside-belt")
    assert matches(silence("s", {"grid": "riverside-belt"}), gone, site)  # the alert's own grid field
    assert not matches(silence("s", {"kind": "plaza"}), gone, site)


# ---- active silences ------------------------------------------------------------------------------------


def test_silenced_only_while_active(site: Site) -> None:
    s = silence("s", {"zone": "riverside-s03"}, starts_at=100.0, ends_at=200.0)
    a = alert("riverside-s03")
    assert [silenced_by(a, [s], site, now) for now in (99.0, 100.0, 199.0, 200.0)] == [None, "s", "s", None]
    ended = silence("e", {"zone": "riverside-s03"}, starts_at=100.0, ends_at=200.0, ended_at=150.0)
    assert silenced_by(a, [ended], site, 160.0) is None  # ended by hand before its time


def test_first_matching_silence_whatever_the_order(site: Site) -> None:
    a = alert("riverside-s03", cause="stall")
    later = silence("z-later", {"cause": "stall"}, starts_at=50.0)
    early = silence("m-early", {"zone": "riverside-s03"}, starts_at=10.0, created_at=20.0)
    same_start = silence("a-same", {"grid": "riverside-belt"}, starts_at=10.0, created_at=20.0)
    made_first = silence("y-first", {"kind": "riverside_segment"}, starts_at=10.0, created_at=5.0)
    other = silence("other", {"zone": "riverside-s04"}, starts_at=0.0)
    assert silenced_by(a, [later, early, other], site, 60.0) == "m-early"
    assert silenced_by(a, [early, same_start, later], site, 60.0) == "a-same"  # same start and creation: by id
    assert silenced_by(a, [same_start, later, made_first], site, 60.0) == "y-first"
    assert silenced_by(a, [other], site, 60.0) is None


def test_a_red_gets_past_a_blue_silence_but_not_a_red_one(site: Site) -> None:
    blue = silence("blue-only", {"grid": "riverside-belt"}, max_level=Level.IV)
    red = silence("all-levels", {"zone": "riverside-s08"}, starts_at=30.0)
    a = alert("riverside-s08", Level.I)
    assert silenced_by(a, [blue], site, 60.0) is None
    assert silenced_by(a, [blue, red], site, 60.0) == "all-levels"


# ---- expiry ---------------------------------------------------------------------------------------------


def test_expired_by_time_not_by_hand() -> None:
    running = silence("running", {"zone": "x"}, ends_at=500.0)
    done_b = silence("b", {"zone": "x"}, ends_at=300.0)
    done_a = silence("a", {"zone": "x"}, ends_at=300.0)
    first = silence("first", {"zone": "x"}, ends_at=100.0)
    by_hand = silence("by-hand", {"zone": "x"}, ends_at=200.0, ended_at=150.0)
    got = expired([running, done_b, by_hand, done_a, first], now=300.0)
    assert [s.id for s in got] == ["first", "a", "b"]
    assert expired([running], now=499.0) == [] and expired([running], now=500.0) == [running]


def test_docstring_examples() -> None:
    assert doctest.testmod(alerts.silence).failed == 0
