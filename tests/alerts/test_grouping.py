"""Incidents: adjacent riverside segments at III yellow or worse grouped, ids stable across merges and splits."""

from __future__ import annotations

import doctest

import pytest

import alerts.grouping
from alerts.grouping import group_incidents, incident_of
from alerts.model import Incident
from domain.levels import Level
from domain.loader import load_site
from domain.site import Site
from domain.values import Alert, AlertState


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site()


def alert(i: str, zone: str, level: Level, t: float, state: AlertState = "raised") -> Alert:
    return Alert(
        id=i, zone=zone, level=level, peak_level=level, cause="capacity", state=state, opened_at=t, updated_at=t
    )


def seg(n: int) -> str:
    return f"riverside-s{n:02d}"


def incident(
    i: str, alert_ids: list[str], segs: list[int], opened_at: float, resolved_at: float | None = None
) -> Incident:
    zones = [seg(n) for n in segs]
    return Incident(
        id=i,
        alert_ids=alert_ids,
        zones=zones,
        level=Level.III,
        opened_at=opened_at,
        updated_at=opened_at,
        resolved_at=resolved_at,
    )


def shape(incidents: dict[str, Incident]) -> list[tuple[str, list[str]]]:
    return [(i.id, i.zones) for i in incidents.values()]


def test_three_adjacent_segments_form_one_incident(site: Site) -> None:
    alerts = [alert("a4", seg(4), Level.III, 40), alert("a3", seg(3), Level.II, 30), alert("a5", seg(5), Level.III, 50)]
    out = group_incidents(alerts, site, {}, now=100)
    [inc] = out.values()
    assert inc.id == "inc-a3"
    assert inc.zones == [seg(3), seg(4), seg(5)] and inc.alert_ids == ["a3", "a4", "a5"]
    assert inc.level == Level.II and inc.opened_at == 30 and inc.updated_at == 100 and inc.resolved_at is None
    assert group_incidents(list(reversed(alerts)), site, {}, now=100) == out  # input order does not matter


def test_worst_level_and_earliest_opened(site: Site) -> None:
    alerts = [alert("x", seg(7), Level.III, 500), alert("y", seg(8), Level.I, 600)]
    [inc] = group_incidents(alerts, site, {}, now=700).values()
    assert (inc.id, inc.level, inc.opened_at) == ("inc-x", Level.I, 500)


def test_non_adjacent_segments_stay_apart(site: Site) -> None:
    alerts = [
        alert("a1", seg(1), Level.III, 1),
        alert("a2", seg(2), Level.III, 2),
        alert("a5", seg(5), Level.II, 5),
        alert("a6", seg(6), Level.II, 6),
        alert("a9", seg(9), Level.I, 9),  # alone: s08 and s10 are calm
    ]
    out = group_incidents(alerts, site, {}, now=10)
    assert shape(out) == [("inc-a1", [seg(1), seg(2)]), ("inc-a5", [seg(5), seg(6)])]
    assert incident_of(out) == {"a1": "inc-a1", "a2": "inc-a1", "a5": "inc-a5", "a6": "inc-a5"}


def test_lone_segment_is_not_an_incident(site: Site) -> None:
    assert group_incidents([alert("a1", seg(1), Level.I, 1), alert("a3", seg(3), Level.I, 3)], site, {}, 9) == {}


def test_blue_is_not_an_incident_by_default(site: Site) -> None:
    alerts = [alert("a1", seg(1), Level.IV, 1), alert("a2", seg(2), Level.IV, 2)]
    assert group_incidents(alerts, site, {}, now=5) == {}
    assert shape(group_incidents(alerts, site, {}, now=5, min_level=Level.IV)) == [("inc-a1", [seg(1), seg(2)])]


def test_a_blue_segment_breaks_the_run(site: Site) -> None:
    alerts = [alert("a1", seg(1), Level.III, 1), alert("a2", seg(2), Level.IV, 2), alert("a3", seg(3), Level.III, 3)]
    assert group_incidents(alerts, site, {}, now=5) == {}


def test_only_riverside_segments_and_open_alerts(site: Site) -> None:
    alerts = [
        alert("a4", seg(4), Level.II, 4),
        alert("m", "super-brand-mall", Level.II, 1),  # neighbour of s04, but a mall
        alert("a5", seg(5), Level.II, 5, state="resolved"),
        alert("ghost", "riverside-s99", Level.II, 0),  # not in the site
    ]
    assert group_incidents(alerts, site, {}, now=9) == {}


def test_acknowledged_and_escalated_alerts_are_members(site: Site) -> None:
    alerts = [alert("a1", seg(1), Level.III, 1, "acknowledged"), alert("a2", seg(2), Level.II, 2, "escalated")]
    assert shape(group_incidents(alerts, site, {}, now=5)) == [("inc-a1", [seg(1), seg(2)])]


def test_id_kept_while_growing_and_updated_at_only_on_change(site: Site) -> None:
    a1, a2, a3 = alert("a1", seg(1), Level.III, 1), alert("a2", seg(2), Level.III, 2), alert("a3", seg(3), Level.II, 3)
    first = group_incidents([a1, a2], site, {}, now=10)
    again = group_incidents([a1, a2], site, first, now=20)
    assert again == first and again["inc-a1"].updated_at == 10  # nothing changed
    grown = group_incidents([a1, a2, a3], site, again, now=30)
    assert shape(grown) == [("inc-a1", [seg(1), seg(2), seg(3)])]
    assert grown["inc-a1"].level == Level.II and grown["inc-a1"].updated_at == 30
    # The founding alert resolves: the incident goes on under its id with the members that remain.
    shrunk = group_incidents([a2, a3], site, grown, now=40)
    assert shape(shrunk) == [("inc-a1", [seg(2), seg(3)])] and shrunk["inc-a1"].opened_at == 2


def test_level_change_alone_updates(site: Site) -> None:
    a1, a2 = alert("a1", seg(1), Level.III, 1), alert("a2", seg(2), Level.III, 2)
    first = group_incidents([a1, a2], site, {}, now=10)
    a2.level = Level.I
    out = group_incidents([a1, a2], site, first, now=20)
    assert out["inc-a1"].level == Level.I and out["inc-a1"].updated_at == 20


def test_merge_keeps_the_older_incident(site: Site) -> None:
    left = [alert("b1", seg(1), Level.III, 50), alert("b2", seg(2), Level.III, 60)]
    right = [alert("a4", seg(4), Level.III, 10), alert("a5", seg(5), Level.III, 20)]
    before = group_incidents(left + right, site, {}, now=100)
    assert set(before) == {"inc-b1", "inc-a4"}
    bridge = alert("c3", seg(3), Level.II, 200)
    merged = group_incidents([*left, bridge, *right], site, before, now=210)
    assert shape(merged) == [("inc-a4", [seg(n) for n in range(1, 6)])]  # inc-a4 opened at 10, inc-b1 at 50
    assert merged["inc-a4"].alert_ids == ["b1", "b2", "c3", "a4", "a5"]


def test_merge_tie_broken_by_id(site: Site) -> None:
    prev = {"inc-z": incident("inc-z", ["z1", "z2"], [1, 2], 5), "inc-m": incident("inc-m", ["m4", "m5"], [4, 5], 5)}
    alerts = [
        alert("z1", seg(1), Level.III, 5),
        alert("z2", seg(2), Level.III, 5),
        alert("n3", seg(3), Level.III, 7),
        alert("m4", seg(4), Level.III, 5),
        alert("m5", seg(5), Level.III, 5),
    ]
    assert list(group_incidents(alerts, site, prev, now=9)) == ["inc-m"]


def test_split_keeps_id_with_the_oldest_member(site: Site) -> None:
    alerts = {n: alert(f"a{n}", seg(n), Level.III, t) for n, t in [(1, 30), (2, 40), (3, 20), (4, 50), (5, 10)]}
    whole = group_incidents(list(alerts.values()), site, {}, now=100)
    assert shape(whole) == [("inc-a5", [seg(n) for n in range(1, 6)])]
    del alerts[3]  # s03 calms down: the run splits into s01-s02 and s04-s05
    parts = group_incidents(list(alerts.values()), site, whole, now=110)
    # a5 (opened at 10) is the oldest member left, so the s04-s05 part keeps the id; the other part is new.
    assert shape(parts) == [("inc-a1", [seg(1), seg(2)]), ("inc-a5", [seg(4), seg(5)])]
    assert parts["inc-a1"].updated_at == 110 and parts["inc-a5"].updated_at == 110
    assert group_incidents(list(alerts.values()), site, parts, now=120) == parts  # and stays so


def test_displaced_incident_continues_in_its_other_part(site: Site) -> None:
    # P (s01-s02) and Q (s04-s07) exist; s03 joins P with Q's s04-s05 while Q's s06 calms down and s08 rises.
    p = [alert("p1", seg(1), Level.III, 1), alert("p2", seg(2), Level.III, 2)]
    q = [alert(f"q{n}", seg(n), Level.III, 10 + n) for n in (4, 5, 6, 7)]
    before = group_incidents(p + q, site, {}, now=50)
    assert set(before) == {"inc-p1", "inc-q4"}
    now_alerts = [*p, alert("r3", seg(3), Level.III, 60), q[0], q[1], q[3], alert("r8", seg(8), Level.III, 60)]
    after = group_incidents(now_alerts, site, before, now=70)
    # P is older and takes the merged run; Q still has q7 in s07-s08 and continues there.
    assert shape(after) == [("inc-p1", [seg(n) for n in range(1, 6)]), ("inc-q4", [seg(7), seg(8)])]


def test_new_id_never_reuses_a_previous_one(site: Site) -> None:
    # inc-a1 was opened by a1, but a0 (older, rising late) joined it; now a1's part splits off.
    prev = {"inc-a1": incident("inc-a1", ["a0", "a1", "a2", "a3"], [1, 2, 3, 4], 0)}
    alerts = [
        alert("a0", seg(1), Level.III, 0),
        alert("a1", seg(2), Level.III, 1),
        alert("x3", seg(4), Level.III, 3),
        alert("a3", seg(5), Level.III, 4),
    ]
    # Components: s01-s02 (a0, a1) and s04-s05 (x3, a3); a0 is the oldest member, so s01-s02 keeps inc-a1.
    # The other part would be "inc-x3"; a previous incident of that name exists (resolved), so it is not reused.
    prev["inc-x3"] = incident("inc-x3", ["old"], [9, 10], 0, resolved_at=2)
    out = group_incidents(alerts, site, prev, now=9)
    assert shape(out) == [("inc-a1", [seg(1), seg(2)]), ("inc-x3-2", [seg(4), seg(5)])]


def test_resolved_previous_incident_is_not_continued(site: Site) -> None:
    prev = {"inc-a1": incident("inc-a1", ["a1", "a2"], [1, 2], 1, resolved_at=3)}
    alerts = [alert("a1", seg(1), Level.III, 1), alert("a2", seg(2), Level.III, 2)]
    assert shape(group_incidents(alerts, site, prev, now=9)) == [("inc-a1-2", [seg(1), seg(2)])]


def test_incident_gone_when_members_gone(site: Site) -> None:
    first = group_incidents([alert("a1", seg(1), Level.III, 1), alert("a2", seg(2), Level.III, 2)], site, {}, 5)
    later = group_incidents([alert("b6", seg(6), Level.III, 6), alert("b7", seg(7), Level.III, 7)], site, first, 9)
    assert shape(later) == [("inc-b6", [seg(6), seg(7)])]


def test_mini_site(mini_site: Site) -> None:
    alerts = [alert("a", "seg-1", Level.II, 1), alert("b", "seg-2", Level.III, 2), alert("c", "plaza", Level.I, 0)]
    assert shape(group_incidents(alerts, mini_site, {}, now=3)) == [("inc-a", ["seg-1", "seg-2"])]


def test_docstring_examples() -> None:
    assert doctest.testmod(alerts.grouping).failed == 0
