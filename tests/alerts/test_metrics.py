"""Response metrics on hand-built alerts, with the expected numbers worked out by hand."""

from __future__ import annotations

import doctest
import json
from collections.abc import Mapping
from typing import Any

import pytest

import alerts.metrics
from alerts.metrics import DEFAULT_TARGETS, response_metrics
from domain.levels import Level
from domain.values import Alert, AlertChange, AlertState


def alert(
    alert_id: str,
    *,
    grid: str = "g1",
    peak: Level = Level.I,
    opened: float = 0.0,
    acked: float | None = None,
    by: str = "",
    resolved: float | None = None,
    history: list[AlertChange] | None = None,
) -> Alert:
    state: AlertState = "resolved" if resolved is not None else ("acknowledged" if acked is not None else "raised")
    return Alert(
        id=alert_id,
        zone=f"zone-{alert_id}",
        grid=grid,
        level=Level.NORMAL if resolved is not None else peak,
        peak_level=peak,
        cause="capacity",
        state=state,
        opened_at=opened,
        updated_at=resolved or acked or opened,
        resolved_at=resolved,
        acknowledged_at=acked,
        acknowledged_by=by,
        history=history or [],
    )


def rows(table: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in table}


def pick(row: Mapping[str, Any], *keys: str) -> tuple[Any, ...]:
    return tuple(row[k] for k in keys)


def test_three_red_alerts_acked_after_60_s_200_s_and_never() -> None:
    alerts = [
        alert("a", acked=60.0, by="ana"),
        alert("b", acked=200.0, by="bo"),
        alert("c"),
    ]
    m = response_metrics(alerts, now=1000.0)
    o = m["overall"]
    assert pick(o, "alerts", "acknowledged", "resolved", "open") == (3, 2, 0, 3)
    assert o["ack_median_s"] == 130.0
    assert o["ack_p90_s"] == 186.0  # 60 + 0.9 * (200 - 60)
    # I red target is 120 s: 60 s in time, 200 s late, "never" is 1000 s past opening and counts as late
    assert pick(o, "ack_judged", "ack_within_target") == (3, 0.333)
    assert o["unacknowledged_past_target"] == 1
    # nothing resolved and no alert older than the 1800 s resolve target: nothing to judge
    assert pick(o, "resolve_median_s", "resolve_p90_s", "resolve_judged", "resolve_within_target") == (
        None,
        None,
        0,
        None,
    )
    assert [r["grid"] for r in m["by_grid"]] == ["g1"]
    assert m["by_grid"][0] | {"grid": None} == o | {"grid": None}
    officers = rows(m["by_officer"], "person")
    assert officers["ana"]["ack_within_target"] == 1.0 and officers["bo"]["ack_within_target"] == 0.0
    assert [r["person"] for r in m["by_officer"]] == ["bo", "ana"]  # worst first


@pytest.fixture
def duty_day() -> list[Alert]:
    """Two grids and a third with only a fresh alert; now = 10,000 s."""
    return [
        # g1: a red handled in time by ana, an orange late on both counts by bo
        alert("A", grid="g1", peak=Level.I, acked=100.0, by="ana", resolved=1000.0),
        alert("B", grid="g1", peak=Level.II, acked=400.0, by="bo", resolved=4000.0),
        # g2: a yellow acknowledged (known from its history only) and a blue that cleared before anyone answered
        alert(
            "C",
            grid="g2",
            peak=Level.III,
            resolved=700.0,
            history=[
                AlertChange(ts=0.0, state="raised", level=Level.III, action="raised"),
                AlertChange(ts=500.0, state="acknowledged", level=Level.III, by="ana", action="acknowledged"),
            ],
        ),
        alert("D", grid="g2", peak=Level.IV, opened=9000.0, resolved=9600.0),
        # g3: a red raised 100 s ago, still inside its 120 s ack target
        alert("E", grid="g3", peak=Level.I, opened=9900.0),
    ]


def test_overall_figures(duty_day: list[Alert]) -> None:
    o = response_metrics(duty_day, now=10_000.0)["overall"]
    assert pick(o, "alerts", "acknowledged", "resolved", "open") == (5, 3, 4, 1)
    assert pick(o, "ack_median_s", "ack_p90_s") == (400.0, 480.0)  # of 100, 400, 500
    assert pick(o, "resolve_median_s", "resolve_p90_s") == (850.0, 3100.0)  # of 600, 700, 1000, 4000
    # A in time, B late, C in time; D cleared before its ack target and E is still inside it: not judged
    assert pick(o, "ack_judged", "ack_within_target") == (3, 0.667)
    assert pick(o, "resolve_judged", "resolve_within_target") == (4, 0.75)  # only B late
    assert o["unacknowledged_past_target"] == 0


def test_grid_table_worst_first_with_none_for_nothing_judged(duty_day: list[Alert]) -> None:
    table = response_metrics(duty_day, now=10_000.0)["by_grid"]
    assert [r["grid"] for r in table] == ["g1", "g2", "g3"]
    g1, g2, g3 = table
    assert pick(g1, "alerts", "ack_median_s", "ack_p90_s", "resolve_median_s", "resolve_p90_s") == (
        2,
        250.0,
        370.0,
        2500.0,
        3700.0,
    )
    assert pick(g1, "ack_within_target", "resolve_within_target") == (0.5, 0.5)
    assert pick(g2, "alerts", "acknowledged", "ack_median_s", "resolve_median_s", "resolve_p90_s") == (
        2,
        1,
        500.0,
        650.0,
        690.0,
    )
    assert pick(g2, "ack_judged", "ack_within_target", "resolve_within_target") == (1, 1.0, 1.0)
    assert g3 == {
        "grid": "g3",
        "alerts": 1,
        "acknowledged": 0,
        "resolved": 0,
        "open": 1,
        "ack_median_s": None,
        "ack_p90_s": None,
        "resolve_median_s": None,
        "resolve_p90_s": None,
        "ack_judged": 0,
        "ack_within_target": None,
        "resolve_judged": 0,
        "resolve_within_target": None,
        "unacknowledged_past_target": 0,
    }


def test_officer_table(duty_day: list[Alert]) -> None:
    m = response_metrics(duty_day, now=10_000.0)
    assert [r["person"] for r in m["by_officer"]] == ["bo", "ana"]
    bo, ana = m["by_officer"]
    assert pick(ana, "alerts", "acknowledged", "resolved") == (2, 2, 2)  # A, and C through its history
    assert pick(ana, "ack_median_s", "ack_p90_s") == (300.0, 460.0)  # of 100, 500
    assert pick(ana, "resolve_median_s", "resolve_p90_s") == (850.0, 970.0)  # of 700, 1000
    assert pick(ana, "ack_within_target", "resolve_within_target") == (1.0, 1.0)
    assert pick(bo, "alerts", "ack_median_s", "ack_within_target", "resolve_within_target") == (1, 400.0, 0.0, 0.0)


def test_when_an_alert_is_judged_late_for_acknowledgement() -> None:
    alerts = [
        alert("cleared-quickly", resolved=100.0),  # nobody had to answer: not judged
        alert("fresh", opened=900.0),  # 100 s old at now: still inside the 120 s target
        alert("open-late", opened=0.0),  # 1000 s unanswered: late, and still waiting
        alert("cleared-late", resolved=500.0),  # stood 500 s unanswered, then cleared: late, no longer waiting
    ]
    o = response_metrics(alerts, now=1000.0)["overall"]
    assert pick(o, "ack_judged", "ack_within_target", "unacknowledged_past_target") == (2, 0.0, 1)
    # resolve: two resolved in time; the open ones are inside the 1800 s target
    assert pick(o, "resolve_judged", "resolve_within_target") == (2, 1.0)
    later = response_metrics(alerts, now=3000.0)["overall"]  # now both open ones are past 1800 s
    assert pick(later, "resolve_judged", "resolve_within_target") == (4, 0.5)


def test_first_acknowledgement_counts_even_when_acknowledged_at_is_later() -> None:
    a = alert(
        "x",
        acked=300.0,
        by="bo",
        history=[
            AlertChange(ts=0.0, state="raised", level=Level.I, action="raised"),
            AlertChange(ts=90.0, state="acknowledged", level=Level.I, by="ana"),  # written before actions existed
            AlertChange(ts=300.0, state="acknowledged", level=Level.I, by="bo", action="acknowledged"),
        ],
    )
    m = response_metrics([a], now=1000.0)
    assert m["overall"]["ack_median_s"] == 90.0
    assert [r["person"] for r in m["by_officer"]] == ["ana"]
    assert m["overall"]["ack_within_target"] == 1.0


def test_targets_default_and_override() -> None:
    m = response_metrics([alert("a", acked=100.0, by="ana")], now=1000.0)
    assert m["targets"] == {
        "I": {"label": "I red", "ack_s": 120.0, "resolve_s": 1800.0},
        "II": {"label": "II orange", "ack_s": 300.0, "resolve_s": 3600.0},
        "III": {"label": "III yellow", "ack_s": 600.0, "resolve_s": 7200.0},
        "IV": {"label": "IV blue", "ack_s": 1200.0, "resolve_s": 14400.0},
    }
    assert m["overall"]["ack_within_target"] == 1.0
    tight = response_metrics([alert("a", acked=100.0, by="ana")], targets={Level.I: (60, 600)}, now=1000.0)
    assert tight["targets"]["I"] == {"label": "I red", "ack_s": 60.0, "resolve_s": 600.0}
    assert tight["targets"]["II"]["ack_s"] == DEFAULT_TARGETS[Level.II][0]  # others keep their defaults
    assert tight["overall"]["ack_within_target"] == 0.0
    assert tight["overall"]["resolve_within_target"] == 0.0  # open 1000 s, past the 600 s target


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ({Level.I: (0, 600)}, "I red: seconds must be positive"),
        ({Level.II: (60,)}, r"II orange: give \(ack_s, resolve_s\)"),
        ({"I": (60, 600)}, "key 'I' is not a Level"),
    ],
)
def test_bad_targets_are_refused_saying_what_to_give(targets: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        response_metrics([], targets=targets, now=0.0)


def test_no_alerts_gives_none_never_nan_and_is_json() -> None:
    m = response_metrics([], now=0.0)
    assert m["by_grid"] == [] and m["by_officer"] == []
    o = m["overall"]
    assert o["alerts"] == 0
    for key in ("ack_median_s", "ack_p90_s", "resolve_median_s", "resolve_p90_s"):
        assert o[key] is None
    assert o["ack_within_target"] is None and o["resolve_within_target"] is None
    json.dumps(m, allow_nan=False)  # raises on NaN or infinity


def test_result_with_data_is_strict_json(duty_day: list[Alert]) -> None:
    text = json.dumps(response_metrics(duty_day, now=10_000.0), allow_nan=False)
    assert json.loads(text)["overall"]["alerts"] == 5


def test_docstring_example() -> None:
    result = doctest.testmod(alerts.metrics)
    assert result.attempted > 0 and result.failed == 0
