"""AlertBook: raise, change in place, resolve, acknowledge, one alert per zone, bounded memory, restart."""

from __future__ import annotations

import itertools
import json

import pytest

from alerts.lifecycle import AlertBook
from domain.levels import Level
from domain.site import Site
from domain.values import Detection


def det(zone: str, ts: float, level: Level, cause: str = "capacity", share: float = 0.7) -> Detection:
    return Detection(
        zone=zone,
        ts=ts,
        level=level,
        cause="density" if cause == "density" else "capacity",
        evidence={"share": share},
        message=f"{zone} {level.label}",
    )


@pytest.fixture
def book(mini_site: Site) -> AlertBook:
    n = itertools.count(1)
    return AlertBook(mini_site, id_factory=lambda: f"a{next(n)}")


def test_normal_with_no_alert_does_nothing(book: AlertBook) -> None:
    assert book.observe([det("seg-1", 0, Level.NORMAL)]) == []
    assert book.open_alerts() == [] and book.recent() == []


def test_raise(book: AlertBook) -> None:
    [a] = book.observe([det("seg-1", 10, Level.IV, share=0.61)])
    assert (a.id, a.zone, a.state, a.level, a.peak_level) == ("a1", "seg-1", "raised", Level.IV, Level.IV)
    assert a.opened_at == a.updated_at == 10 and a.resolved_at is None and a.open
    assert a.evidence == {"share": 0.61} and a.message == "seg-1 IV blue"
    assert [(c.state, c.level) for c in a.history] == [("raised", Level.IV)]
    assert book.get("a1") is a and book.open_for("seg-1") is a


def test_escalate_in_place_same_id(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.IV)])
    [a] = book.observe([det("seg-1", 20, Level.II, share=0.82)])
    assert a.id == "a1" and a.state == "escalated"
    assert a.level == a.peak_level == Level.II and a.updated_at == 20 and a.evidence == {"share": 0.82}
    [a] = book.observe([det("seg-1", 30, Level.III)])
    assert a.id == "a1" and a.level == Level.III and a.peak_level == Level.II
    assert [(c.state, c.level) for c in a.history] == [
        ("raised", Level.IV),
        ("escalated", Level.II),
        ("escalated", Level.III),
    ]
    assert a.history[2].note == "II orange → III yellow"
    assert len(book.recent()) == 1 and len(book.open_alerts()) == 1


def test_same_level_refreshes_evidence_without_a_change(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III, share=0.71)])
    assert book.observe([det("seg-1", 20, Level.III, share=0.74)]) == []
    a = book.get("a1")
    assert a is not None and a.evidence == {"share": 0.74} and a.updated_at == 10 and len(a.history) == 1


def test_same_level_from_a_measured_cause_replaces_the_forecast_text(book: AlertBook) -> None:
    forecast = Detection(zone="seg-1", ts=10, level=Level.I, cause="forecast", message="reaches I red in 8 min")
    book.observe([forecast])
    measured = Detection(zone="seg-1", ts=20, level=Level.I, cause="capacity", message="at 127% of capacity")
    assert book.observe([measured]) == []  # same level: not a lifecycle change
    a = book.get("a1")
    assert a is not None and (a.cause, a.message) == ("capacity", "at 127% of capacity")


def test_no_duplicate_alert_per_zone(book: AlertBook) -> None:
    changed = book.observe([det("seg-1", 10, Level.IV), det("seg-1", 11, Level.III), det("seg-2", 11, Level.IV)])
    assert sorted(a.id for a in changed) == ["a1", "a2"]
    for ts in range(12, 100):
        book.observe([det("seg-1", ts, Level(1 + ts % 4))])
    assert [a.zone for a in book.open_alerts()].count("seg-1") == 1
    assert len(book.recent()) == 2


def test_resolve_then_new_alert(book: AlertBook) -> None:
    book.observe([det("plaza", 10, Level.III, cause="density")])
    [a] = book.observe([det("plaza", 50, Level.NORMAL)])
    assert a.state == "resolved" and a.resolved_at == 50 and not a.open
    assert a.level == Level.NORMAL and a.peak_level == Level.III and a.cause == "density"
    assert a.history[-1].state == "resolved"
    assert book.open_alerts() == [] and book.open_for("plaza") is None
    [b] = book.observe([det("plaza", 60, Level.IV)])
    assert b.id == "a2" and b.state == "raised"
    assert [x.id for x in book.recent()] == ["a2", "a1"]


def test_acknowledge(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III)])
    a = book.acknowledge("a1", by="officer-7", note="sending two wardens", now=15)
    assert a.state == "acknowledged" and a.updated_at == 15
    assert (a.history[-1].state, a.history[-1].by, a.history[-1].note) == (
        "acknowledged",
        "officer-7",
        "sending two wardens",
    )
    # Going down keeps the acknowledgement; going worse needs a new one.
    [a] = book.observe([det("seg-1", 20, Level.IV)])
    assert a.state == "acknowledged"
    [a] = book.observe([det("seg-1", 30, Level.II)])
    assert a.state == "escalated"


def test_acknowledge_errors(book: AlertBook) -> None:
    with pytest.raises(KeyError, match="nope"):
        book.acknowledge("nope", by="x", note="", now=0)
    book.observe([det("seg-1", 10, Level.III)])
    with pytest.raises(ValueError, match="by"):
        book.acknowledge("a1", by=" ", note="", now=11)
    book.observe([det("seg-1", 20, Level.NORMAL)])
    with pytest.raises(ValueError, match="resolved"):
        book.acknowledge("a1", by="x", note="", now=21)


def test_rejections_are_counted(book: AlertBook) -> None:
    assert book.observe([det("nowhere", 10, Level.II)]) == []
    book.observe([det("seg-1", 10, Level.III)])
    assert book.observe([det("seg-1", 5, Level.NORMAL)]) == []  # older than the alert: not a resolve
    assert book.open_for("seg-1") is not None
    assert book.rejected == {"unknown_zone": 1, "stale_detection": 1}


def test_open_alerts_and_recent_ordering(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.IV)])
    book.observe([det("seg-2", 20, Level.II)])
    book.observe([det("plaza", 30, Level.IV)])
    book.observe([det("plaza", 40, Level.NORMAL)])  # a3 resolved
    book.observe([det("plaza", 50, Level.IV)])  # a4
    assert [a.id for a in book.open_alerts()] == ["a2", "a4", "a1"]  # most severe, then newest
    assert [a.id for a in book.recent()] == ["a2", "a4", "a1", "a3"]
    assert [a.id for a in book.recent(limit=2)] == ["a2", "a4"]


def test_bounded_resolved_history(mini_site: Site) -> None:
    n = itertools.count(1)
    book = AlertBook(mini_site, id_factory=lambda: f"a{next(n)}", max_resolved=5)
    for i in range(50):
        book.observe([det("seg-1", 2 * i, Level.III)])
        book.observe([det("seg-1", 2 * i + 1, Level.NORMAL)])
    book.observe([det("seg-2", 200, Level.II)])
    assert [a.id for a in book.recent()] == ["a51", "a50", "a49", "a48", "a47", "a46"]
    assert book.get("a1") is None
    with pytest.raises(KeyError):
        book.acknowledge("a1", by="x", note="", now=300)


def test_bounded_change_history_keeps_the_start(mini_site: Site) -> None:
    book = AlertBook(mini_site, max_history=10)
    for ts in range(100):
        book.observe([det("seg-1", ts, Level.III if ts % 2 else Level.IV)])
    [a] = book.open_alerts()
    assert len(a.history) == 10
    assert a.history[0].state == "raised" and a.history[0].ts == 0
    assert a.history[-1].ts == 99
    assert a.revision == 100  # every change counted, though only 10 are kept (CAP numbers messages by it)


def test_default_ids_are_unique(mini_site: Site) -> None:
    book = AlertBook(mini_site)
    ids = set()
    for i in range(20):
        book.observe([det("seg-1", 2 * i, Level.IV)])
        ids |= {a.id for a in book.observe([det("seg-1", 2 * i + 1, Level.NORMAL)])}
    assert len(ids) == 20


def test_snapshot_round_trip(mini_site: Site, book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.IV)])
    book.observe([det("seg-1", 20, Level.II)])
    book.acknowledge("a1", by="officer-7", note="on it", now=25)
    book.observe([det("plaza", 30, Level.III), det("nowhere", 30, Level.II)])
    book.observe([det("plaza", 40, Level.NORMAL)])
    data = json.loads(json.dumps(book.to_snapshot()))
    n = itertools.count(100)
    back = AlertBook(mini_site, id_factory=lambda: f"a{next(n)}")
    back.from_snapshot(data)
    assert back.recent() == book.recent()
    assert back.rejected == book.rejected
    assert back.get("a1") == book.get("a1")
    # The open alert carries on in place; the resolved zone raises a fresh one.
    [a] = back.observe([det("seg-1", 50, Level.I)])
    assert a.id == "a1" and a.state == "escalated" and a.peak_level == Level.I
    [b] = back.observe([det("plaza", 50, Level.IV)])
    assert b.id == "a100"


def test_snapshot_refuses_two_open_alerts_for_a_zone(mini_site: Site, book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.IV)])
    data = book.to_snapshot()
    twin = dict(data["alerts"][0], id="twin")
    data["alerts"].append(twin)
    with pytest.raises(ValueError, match="two open alerts"):
        book.from_snapshot(data)
    with pytest.raises(ValueError, match="version"):
        book.from_snapshot({"version": 0})
    with pytest.raises(ValueError, match="alert snapshot"):
        book.from_snapshot({"version": 1, "alerts": [{"id": 3}], "resolved": []})
    with pytest.raises(ValueError, match="alert snapshot"):
        book.from_snapshot({"version": 1, "alerts": []})
    assert [a.id for a in book.open_alerts()] == ["a1"]  # unchanged by the failed restores


def test_snapshot_closes_alerts_of_removed_zones(mini_site: Site, book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.IV)])
    data = book.to_snapshot()
    data["alerts"][0]["zone"] = "demolished"
    back = AlertBook(mini_site)
    back.from_snapshot(data)
    a = back.get("a1")
    assert a is not None and a.state == "resolved" and "no longer in the site" in a.message
    assert back.open_alerts() == []


def test_normal_from_an_unhealthy_zone_does_not_resolve(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.II)])
    silent = Detection(zone="seg-1", ts=20, level=Level.NORMAL, cause="capacity", evidence={"healthy": 0.0})
    assert book.observe([silent]) == []
    assert book.open_for("seg-1") is not None
    assert book.rejected == {"normal_while_unhealthy": 1}
    [a] = book.observe([det("seg-1", 30, Level.NORMAL)])
    assert a.state == "resolved"


def test_alert_carries_grid_micro_grid_and_signals(book: AlertBook, mini_site: Site) -> None:
    d = Detection(zone="seg-1", ts=10, level=Level.II, cause="capacity", signals={"capacity": 3, "sensor": 1})
    [a] = book.observe([d])
    zone = mini_site.zones["seg-1"]
    assert (a.grid, a.micro_grid) == (zone.grid, zone.micro_grid)
    assert a.signals == {"capacity": 3, "sensor": 1}
    assert a.history[0].action == "raised"
    book.observe([Detection(zone="seg-1", ts=20, level=Level.II, cause="capacity", signals={"capacity": 3})])
    assert a.signals == {"capacity": 3}  # refreshed silently at the same level


def test_level_changes_record_actions_and_escalated_at(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.IV)])
    [a] = book.observe([det("seg-1", 20, Level.II)])
    assert a.escalated_at == 20 and a.history[-1].action == "level_up"
    [a] = book.observe([det("seg-1", 30, Level.III)])
    assert a.escalated_at == 20 and a.history[-1].action == "level_down"


def test_acknowledge_records_first_response_and_refuses_a_second(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III)])
    a = book.acknowledge("a1", by="officer-7", note="on my way", now=70)
    assert (a.acknowledged_at, a.acknowledged_by, a.ack_comment) == (70, "officer-7", "on my way")
    with pytest.raises(ValueError, match="already acknowledged by officer-7"):
        book.acknowledge("a1", by="officer-8", note="", now=80)
    book.observe([det("seg-1", 90, Level.II)])  # worse: needs a new acknowledgement
    a = book.acknowledge("a1", by="officer-8", note="more wardens", now=95)
    # Response time is measured to the first acknowledgement; the latest comment is kept.
    assert (a.acknowledged_at, a.acknowledged_by, a.ack_comment) == (70, "officer-7", "more wardens")
    assert [c.by for c in a.history if c.action == "acknowledged"] == ["officer-7", "officer-8"]


def test_comment_on_open_and_resolved_alerts(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III)])
    a = book.comment("a1", by="op-1", text="CCTV shows queues at gate 2", now=12)
    assert a.state == "raised" and (a.history[-1].action, a.history[-1].note) == (
        "commented",
        "CCTV shows queues at gate 2",
    )
    book.observe([det("seg-1", 20, Level.NORMAL)])
    a = book.comment("a1", by="op-1", text="debrief: gate 2 too narrow", now=30)
    assert a.state == "resolved" and a.history[-1].action == "commented"
    with pytest.raises(ValueError, match="needs text"):
        book.comment("a1", by="op-1", text="  ", now=31)


def test_resolve_by_hand_needs_a_comment_and_holds_until_calm(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III)])
    with pytest.raises(ValueError, match="needs a comment"):
        book.resolve("a1", by="officer-7", comment=" ", now=20)
    a = book.resolve("a1", by="officer-7", comment="counter misplaced, checked by eye", now=20)
    assert (a.state, a.resolved_at, a.resolved_by, a.resolve_comment) == (
        "resolved",
        20,
        "officer-7",
        "counter misplaced, checked by eye",
    )
    assert a.history[-1].action == "resolved" and a.history[-1].by == "officer-7"
    # The same level (or lower) is not raised again straight away ...
    assert book.observe([det("seg-1", 30, Level.III)]) == []
    assert book.observe([det("seg-1", 40, Level.IV)]) == []
    assert book.rejected["closed_by_hand"] == 2
    # ... a worse one is, at once.
    [b] = book.observe([det("seg-1", 50, Level.II)])
    assert b.id == "a2" and b.state == "raised"


def test_resolve_by_hand_then_calm_reopens_normally(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III)])
    book.resolve("a1", by="officer-7", comment="dispersed", now=20)
    book.observe([det("seg-1", 30, Level.NORMAL)])
    [b] = book.observe([det("seg-1", 40, Level.IV)])
    assert b.id == "a2"


def test_reraise_after_ack_timeout(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.II)])
    assert book.reraise("a1", now=15, note="x") is None  # not acknowledged: nothing to re-raise
    book.acknowledge("a1", by="officer-7", note="", now=20)
    a = book.reraise("a1", now=1220, note="acknowledged 20 min ago and still II orange")
    assert a is not None and a.state == "raised" and a.history[-1].action == "reraised"
    assert a.acknowledged_by == "officer-7"  # who answered first stays on record


def test_closed_by_hand_survives_a_snapshot(mini_site: Site, book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III)])
    book.resolve("a1", by="officer-7", comment="dispersed", now=20)
    other = AlertBook(mini_site, id_factory=lambda: "b1")
    other.from_snapshot(json.loads(json.dumps(book.to_snapshot())))
    assert other.observe([det("seg-1", 30, Level.III)]) == []


def test_back_up_to_an_acknowledged_level_needs_no_new_acknowledgement(book: AlertBook) -> None:
    book.observe([det("seg-1", 10, Level.III)])
    book.acknowledge("a1", by="officer-7", note="", now=15)
    book.observe([det("seg-1", 20, Level.IV)])
    [a] = book.observe([det("seg-1", 30, Level.III)])
    assert a.state == "acknowledged"  # a zone hovering at a threshold does not demand the same answer twice
    [a] = book.observe([det("seg-1", 40, Level.II)])
    assert a.state == "escalated" and a.escalated_at == 40
