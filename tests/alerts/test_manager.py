"""AlertManager end to end on real stages: lifecycle, grouping, inhibition, silences, dedup, routing by the
duty roster, escalation timing, acknowledgement timeout, planned events, emergency mode, journal and restart.

Clock: a Wednesday, 10:00 in Shanghai (the mini roster's day shift: ann watches seg-1, bob seg-1 and seg-2's
micro-grid, lee leads the grid, cmd and ops are command).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.actions import AlertFilter
from alerts.escalation import Escalator
from alerts.journal import Journal
from alerts.manager import AlertManager
from alerts.measures import load_measures
from alerts.model import DeliveryAttempt, Notification
from alerts.roster import load_roster
from alerts.routing import Router
from detect.overrides import Overrides
from domain.clock import ManualClock
from domain.levels import Level
from domain.site import Site
from domain.values import Detection, ZoneState

T0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
ROSTER = Path(__file__).parents[1] / "fixtures" / "mini_roster.toml"


class Rig:
    """A manager with its real parts and a list standing in for the dispatcher queue."""

    def __init__(self, site: Site, journal_path: Path, clock: ManualClock, ids: Callable[[], str]) -> None:
        self.site = site
        self.clock = clock
        self.sent: list[Notification] = []
        self.pushed: list[list[str]] = []
        roster = load_roster(ROSTER, site)
        self.journal = Journal(journal_path)
        self.overrides = Overrides(site)
        self.m = AlertManager(
            site,
            journal=self.journal,
            router=Router(roster, site),
            escalator=Escalator(roster.policy),
            measures=load_measures(),
            overrides=self.overrides,
            clock=clock,
            submit=self._submit,
            on_change=lambda alerts: self.pushed.append([a.id for a in alerts]),
            id_factory=ids,
            public_url="https://cf.example",
        )

    def _submit(self, n: Notification) -> bool:
        self.sent.append(n)
        return True

    def step(self, *dets: Detection, states: list[ZoneState] | None = None) -> list[str]:
        now = self.clock.now()
        changed = self.m.observe(list(dets), states or [], now)
        changed += self.m.tick(now)
        return sorted({a.id for a in changed})

    def at(self, seconds: float) -> Rig:
        self.clock.set(T0 + seconds)
        return self


def det(zone: str, level: Level, t: float, cause: str = "capacity", **signals: int) -> Detection:
    return Detection(
        zone=zone,
        ts=T0 + t,
        level=level,
        cause=cause,  # type: ignore[arg-type]
        evidence={"occupancy": 1800.0, "capacity": 2000.0, "density": 2.5, "inflow_per_min": 40.0},
        message=f"{zone} at {level.label}",
        signals=signals or ({cause: int(level)} if level else {}),
    )


def state(zone: str, occupancy: float, capacity: int, level: Level = Level.NORMAL) -> ZoneState:
    return ZoneState(
        zone=zone, ts=T0, occupancy=occupancy, capacity=capacity, share=occupancy / capacity, density=0.5,
        inflow_per_min=0.0, outflow_per_min=0.0, arrivals_today=0, level=level,
    )  # fmt: skip


@pytest.fixture
def rig(mini_site: Site, tmp_path: Path) -> Rig:
    n = itertools.count(1)
    return Rig(mini_site, tmp_path / "alerts.sqlite", ManualClock(T0), lambda: f"a{next(n)}")


def people(n: Notification) -> list[str]:
    return sorted(r.person for r in n.recipients)


# ---- raise, dedup, level change ---------------------------------------------------------------------


def test_a_new_alert_goes_to_the_zones_officers_with_measures(rig: Rig) -> None:
    assert rig.step(det("seg-1", Level.II, 0)) == ["a1"]
    [n] = rig.sent
    assert (n.kind, n.level, n.key, n.step, n.alert_ids) == ("raised", Level.II, "a1", 0, ("a1",))
    assert people(n) == ["ann"]  # the zone duty wins over bob's micro-grid duty
    assert n.title.startswith("II orange · ") and "Promenade segment 1" in n.title
    assert "Do now:" in n.body and "https://cf.example/officer#alert=a1" in n.body
    a = rig.m.book.get("a1")
    assert a is not None and a.measures and a.measures[0] in n.body
    stored = rig.journal.get_alert("a1")
    assert stored is not None and stored.level == Level.II
    assert [x.id for x in rig.journal.notifications(alert_id="a1")] == [n.id]
    assert [e.action for e in rig.journal.audit_log(subject="a1")] == ["notify.raised"]


def test_same_level_is_not_pushed_again_and_level_up_is(rig: Rig) -> None:
    rig.step(det("seg-1", Level.III, 0))
    rig.at(30).step(det("seg-1", Level.III, 30))
    assert len(rig.sent) == 1
    assert rig.at(60).step(det("seg-1", Level.II, 60)) == ["a1"]  # same alert, changed in place
    assert [n.kind for n in rig.sent] == ["raised", "level_up"]
    assert rig.sent[1].alert_ids == ("a1",) and rig.sent[1].level == Level.II
    rig.at(90).step(det("seg-1", Level.III, 90))  # easing: shown, not pushed
    assert len(rig.sent) == 2
    skipped = [e for e in rig.journal.audit_log(subject="a1") if e.action == "notify.skipped"]
    assert skipped and "Level down" in skipped[0].detail["reason"]


def test_resolution_is_pushed_to_everyone_told(rig: Rig) -> None:
    rig.step(det("seg-1", Level.I, 0))
    rig.at(130).step()  # escalated to lee
    rig.at(200).step(det("seg-1", Level.NORMAL, 200))
    last = rig.sent[-1]
    assert last.kind == "resolved" and people(last) == ["ann", "lee"]
    assert "resolved" in last.title and rig.m.book.open_alerts() == []


# ---- escalation and acknowledgement -----------------------------------------------------------------


def test_unacknowledged_red_escalates_on_time_to_leader_then_command(rig: Rig) -> None:
    rig.step(det("seg-1", Level.I, 0))
    rig.at(119).step()
    assert len(rig.sent) == 1
    rig.at(120).step()
    assert (rig.sent[-1].kind, rig.sent[-1].step, people(rig.sent[-1])) == ("escalated", 1, ["ann", "lee"])
    rig.at(240).step()
    assert (rig.sent[-1].kind, rig.sent[-1].step) == ("escalated", 2)
    assert people(rig.sent[-1]) == ["ann", "cmd", "lee", "ops"]
    assert "Escalation step 2" in rig.sent[-1].body


def test_acknowledgement_stops_escalation_and_runs_out(rig: Rig) -> None:
    rig.step(det("seg-1", Level.I, 0))
    rig.at(60)
    j = rig.m.acknowledge("a1", "ann", "two wardens at gate 2")
    assert j["state"] == "acknowledged" and j["acknowledged_by"] == "ann"
    assert rig.pushed[-1] == ["a1"]  # walls see it at once
    rig.at(400).step()
    assert len(rig.sent) == 1  # no escalation once acknowledged
    rig.at(659).step()
    assert len(rig.sent) == 1
    rig.at(660).step()  # the I red acknowledgement holds 600 s
    assert rig.sent[-1].kind == "reraised" and people(rig.sent[-1]) == ["ann"]
    a = rig.m.book.get("a1")
    assert a is not None and a.state == "raised" and a.history[-1].action == "reraised"
    rig.at(780).step()  # and escalation starts over
    assert (rig.sent[-1].kind, rig.sent[-1].step) == ("escalated", 1)
    actions = [e.action for e in rig.journal.audit_log(subject="a1")]
    assert "alert.acknowledged" in actions


def test_acknowledge_errors_are_clear(rig: Rig) -> None:
    with pytest.raises(KeyError):
        rig.m.acknowledge("nope", "ann", "")
    rig.step(det("seg-1", Level.III, 0))
    rig.m.acknowledge("a1", "ann", "")
    with pytest.raises(ValueError, match="already acknowledged by ann"):
        rig.m.acknowledge("a1", "bob", "")


def test_emergency_mode_halves_escalation_delays_and_is_audited(rig: Rig) -> None:
    modes = rig.m.set_emergency("cmd", "riverside", True, "NYE countdown crowd")
    assert [m["scope"] for m in modes] == ["riverside"] and rig.m.emergency() == modes
    assert rig.overrides.in_emergency("seg-1")
    rig.step(det("seg-1", Level.I, 0))
    rig.at(60).step()
    assert (rig.sent[-1].kind, rig.sent[-1].step) == ("escalated", 1)
    with pytest.raises(ValueError, match="already in emergency"):
        rig.m.set_emergency("cmd", "riverside", True, "again")
    rig.m.set_emergency("cmd", "riverside", False, "crowd dispersed")
    assert not rig.overrides.in_emergency("seg-1") and rig.m.emergency() == []
    assert [e.action for e in rig.journal.audit_log(subject="riverside")] == ["emergency.off", "emergency.on"]
    with pytest.raises(ValueError, match="scope must be"):
        rig.m.set_emergency("cmd", "atlantis", True, "x")


# ---- grouping, inhibition, uncertainty, silences ------------------------------------------------------


def test_adjacent_segments_form_one_incident_and_one_notification_stream(rig: Rig) -> None:
    rig.step(det("seg-1", Level.III, 0))
    assert [n.kind for n in rig.sent] == ["raised"]
    rig.at(30).step(det("seg-1", Level.III, 30), det("seg-2", Level.III, 30))
    a1, a2 = rig.m.book.get("a1"), rig.m.book.get("a2")
    assert a1 is not None and a2 is not None and a1.incident == a2.incident is not None
    n = rig.sent[-1]
    assert n.kind == "member_added" and n.key == a1.incident and set(n.zones) == {"seg-1", "seg-2"}
    assert people(n) == ["ann", "bob"]
    assert len(rig.sent) == 2  # one message for the second segment, not a second "new alert"
    # Acknowledging one member acknowledges the incident.
    rig.m.acknowledge("a2", "bob", "closing the gate at S2")
    assert a1.state == a2.state == "acknowledged"
    rig.at(2000).step(det("seg-1", Level.III, 2000), det("seg-2", Level.III, 2000))
    assert all(n.kind != "escalated" for n in rig.sent)


def test_capacity_alert_inhibits_the_neighbours_stall_alert(rig: Rig) -> None:
    rig.step(det("plaza", Level.I, 0), det("seg-1", Level.II, 0, cause="stall"))
    a_plaza, a_seg = rig.m.book.open_for("plaza"), rig.m.book.open_for("seg-1")
    assert a_plaza is not None and a_seg is not None
    assert a_seg.inhibited_by == a_plaza.id and a_plaza.inhibited_by is None
    assert [n.alert_ids for n in rig.sent] == [(a_plaza.id,)]  # only the source is pushed
    assert a_seg.history[-1].action == "inhibited"
    assert rig.m.get_alert(a_seg.id)["inhibited_by"] == a_plaza.id  # type: ignore[index]  # still on the wall


def test_sensor_signal_marks_the_alert_uncertain(rig: Rig) -> None:
    rig.step(det("seg-1", Level.II, 0, capacity=3, sensor=1))
    a = rig.m.book.get("a1")
    assert a is not None and a.uncertain and a.uncertain_reason
    assert "uncertain" in rig.sent[0].body
    rig.at(10).step(det("seg-1", Level.II, 10, capacity=3))
    assert not a.uncertain and a.history[-1].action == "certain"


def test_silence_holds_back_pushes_until_it_ends(rig: Rig) -> None:
    s = rig.m.add_silence("cmd", {"zone": "seg-2"}, 600, "drill on segment 2")
    rig.step(det("seg-2", Level.II, 0))
    a = rig.m.book.open_for("seg-2")
    assert a is not None and a.silenced_by == s["id"] and rig.sent == []
    rig.at(600).step(det("seg-2", Level.II, 600))  # silence over: now it is news
    assert a.silenced_by is None and [n.kind for n in rig.sent] == ["raised"]
    assert [e.action for e in rig.journal.audit_log(subject=s["id"])] == ["silence.expired", "silence.created"]
    with pytest.raises(ValueError):
        rig.m.add_silence("cmd", {"zone": "nowhere"}, 600, "x")
    with pytest.raises(ValueError, match="reason"):
        rig.m.add_silence("cmd", {"zone": "seg-2"}, 600, " ")


def test_a_silence_ended_by_hand(rig: Rig) -> None:
    s = rig.m.add_silence("cmd", {"grid": "riverside"}, 3600, "maintenance")
    rig.step(det("seg-1", Level.III, 0))
    assert rig.sent == []
    rig.at(10)
    ended = rig.m.end_silence(s["id"], "cmd")
    assert ended["ended_by"] == "cmd" and [n.kind for n in rig.sent] == ["raised"]
    with pytest.raises(ValueError, match="already ended"):
        rig.m.end_silence(s["id"], "cmd")


# ---- people close alerts; planned events ---------------------------------------------------------------


def test_resolve_by_hand_and_comment(rig: Rig) -> None:
    rig.step(det("seg-1", Level.III, 0))
    rig.at(50)
    rig.m.comment("a1", "ann", "queue at the ferry pier")
    j = rig.m.resolve("a1", "ann", "crowd dispersed, checked on foot")
    assert j["state"] == "resolved" and j["resolved_by"] == "ann"
    assert rig.sent[-1].kind == "resolved"
    assert [c.action for c in rig.journal.changes("a1")] == ["raised", "commented", "resolved"]
    rig.m.comment("a1", "lee", "debrief: add a barrier")  # after the fact, on the journal's copy
    assert rig.journal.changes("a1")[-1].note == "debrief: add a barrier"


def test_planned_event_reaches_detection_and_ends(rig: Rig) -> None:
    e = rig.m.add_event("cmd", "Fireworks", ["seg-1"], T0, T0 + 3600, 3.0, "NYE show", share=(0.7, 0.8, 0.9, 0.98))
    assert rig.overrides.flow_factor("seg-1", T0 + 10) == 3.0
    assert rig.overrides.thresholds_for("seg-1", T0 + 10).share == (0.7, 0.8, 0.9, 0.98)
    assert [x["id"] for x in rig.m.events(True)] == [e["id"]]
    rig.at(3600).step()
    assert rig.m.events(True) == [] and rig.overrides.flow_factor("seg-1", T0 + 3600) == 1.0
    assert [x.action for x in rig.journal.audit_log(subject=e["id"])] == ["event.expired", "event.created"]
    with pytest.raises(ValueError):
        rig.m.add_event("cmd", "Bad", ["seg-1"], T0, T0 - 1, 2.0, "ends before it starts")


# ---- restart ---------------------------------------------------------------------------------------


def test_restart_resumes_without_notifying_again(mini_site: Site, tmp_path: Path) -> None:
    ids = itertools.count(1)
    path = tmp_path / "alerts.sqlite"
    clock = ManualClock(T0)
    first = Rig(mini_site, path, clock, lambda: f"a{next(ids)}")
    first.step(det("seg-1", Level.I, 0), det("seg-2", Level.II, 0))
    sent_before = len(first.sent)
    first.journal.close()

    clock.set(T0 + 30)
    second = Rig(mini_site, path, clock, lambda: f"b{next(ids)}")
    assert second.m.restore() == 2
    second.step(det("seg-1", Level.I, 30), det("seg-2", Level.II, 30))
    assert second.sent == []  # nothing new to say: it was all delivered before the restart
    assert {a.id for a in second.m.book.open_alerts()} == {"a1", "a2"}
    second.at(119).step()
    assert second.sent == []
    second.at(120).step()  # the escalation timer kept running across the restart
    assert [(n.kind, n.step) for n in second.sent] == [("escalated", 1)]
    assert sent_before == 1  # both segments were one incident: one message


# ---- read side -----------------------------------------------------------------------------------------


def test_list_filters_deliveries_cap_and_metrics(rig: Rig) -> None:
    rig.step(det("seg-1", Level.II, 0), det("plaza", Level.IV, 0))
    assert {a["zone"] for a in rig.m.list_alerts(AlertFilter())} == {"seg-1", "plaza"}
    assert [a["zone"] for a in rig.m.list_alerts(AlertFilter(min_level=Level.III))] == ["seg-1"]
    rig.at(60).m.acknowledge("a1", "ann", "")
    rig.at(120).step(det("seg-1", Level.NORMAL, 120))
    assert [a["zone"] for a in rig.m.list_alerts(AlertFilter(state="resolved"))] == ["seg-1"]
    n = rig.sent[0]
    rig.journal.record_attempt(
        DeliveryAttempt(
            notification_id=n.id, person="ann", channel="ntfy://127.0.0.1:8090", attempt=1, at=T0 + 1, ok=True
        )
    )
    [d] = [d for d in rig.m.deliveries("a1") if d["id"] == n.id]
    assert d["attempts"][0]["ok"] is True and d["attempts"][0]["person"] == "ann"
    channels = [c for r in d["recipients"] for c in r["channels"]]
    assert channels and all(c.count("/") <= 2 for c in channels), f"topics and tokens must not show: {channels}"
    assert b"urn:oasis:names:tc:emergency:cap:1.2" in rig.m.cap("a1")
    with pytest.raises(KeyError):
        rig.m.cap("nope")
    metrics = rig.m.response_metrics(None, None)
    assert metrics["overall"]["alerts"] == 2 and metrics["overall"]["acknowledged"] == 1
    assert metrics["by_officer"][0]["person"] == "ann" and metrics["overall"]["ack_median_s"] == 60


def test_diversion_targets_are_live(rig: Rig) -> None:
    states = [state("seg-1", 1900, 2000, Level.I), state("seg-2", 400, 2000), state("plaza", 300, 1500)]
    rig.step(det("seg-1", Level.I, 0), states=states)
    a = rig.m.book.get("a1")
    assert a is not None and [d.zone for d in a.diversion][:2] == ["seg-2", "plaza"]
    assert "Divert to:" in rig.sent[0].body


# ---- escalation follows the situation through key changes (found in review) ------------------------------


def test_an_incident_breaking_up_keeps_escalating_the_rest(rig: Rig) -> None:
    rig.step(det("seg-1", Level.II, 0), det("seg-2", Level.II, 0))
    assert [n.kind for n in rig.sent] == ["raised"] and rig.sent[0].key.startswith("inc-")
    rig.at(10).step(det("seg-1", Level.II, 10), det("seg-2", Level.NORMAL, 10))
    assert "a1" in rig.m.escalator.tracked(), "seg-1's alert lost its escalation timer"
    rig.at(300).step(det("seg-1", Level.II, 300))  # II orange: 300 s to answer, counted from the first push
    assert (rig.sent[-1].kind, rig.sent[-1].step, rig.sent[-1].alert_ids) == ("escalated", 1, ("a1",))


def test_escalation_resumes_when_a_silence_ends(rig: Rig) -> None:
    rig.step(det("seg-1", Level.II, 0))
    rig.at(10).m.add_silence("cmd", {"zone": "seg-1"}, 600, "checking the counter")
    rig.step(det("seg-1", Level.II, 10))
    rig.at(400).step(det("seg-1", Level.II, 400))
    assert [n.kind for n in rig.sent] == ["raised"]  # silenced: no escalation
    rig.at(620).step(det("seg-1", Level.II, 620))  # silence over, still unanswered: the clock runs again
    assert len(rig.sent) == 1  # the officer was told at this level already: no second "new alert"
    rig.at(920).step(det("seg-1", Level.II, 920))
    assert (rig.sent[-1].kind, rig.sent[-1].step) == ("escalated", 1)


def test_acknowledging_orange_does_not_hold_back_red(rig: Rig) -> None:
    rig.step(det("seg-1", Level.II, 0))
    rig.at(10).m.acknowledge("a1", "ann", "on it")
    rig.at(60).step(det("seg-1", Level.I, 60))
    assert rig.sent[-1].kind == "level_up"
    rig.at(180).step(det("seg-1", Level.I, 180))  # I red: 120 s to answer the worse level
    assert (rig.sent[-1].kind, rig.sent[-1].step, people(rig.sent[-1])) == ("escalated", 1, ["ann", "lee"])


def test_the_all_clear_goes_to_those_told_even_after_a_shift_change(rig: Rig) -> None:
    rig.at(9 * 3600 + 55 * 60)  # 19:55: ann (day shift) is told
    rig.step(det("seg-1", Level.III, rig.clock.now() - T0))
    assert people(rig.sent[0]) == ["ann"]
    rig.at(10 * 3600 + 5 * 60)  # 20:05: the night officer is on, ann has not heard it ended
    rig.step(det("seg-1", Level.NORMAL, rig.clock.now() - T0))
    assert rig.sent[-1].kind == "resolved" and people(rig.sent[-1]) == ["ann"]


def test_restart_keeps_every_change_in_the_journal(mini_site: Site, tmp_path: Path) -> None:
    ids = itertools.count(1)
    path = tmp_path / "alerts.sqlite"
    clock = ManualClock(T0)
    first = Rig(mini_site, path, clock, lambda: f"a{next(ids)}")
    first.step(det("seg-1", Level.III, 0))
    first.journal.close()
    second = Rig(mini_site, path, clock, lambda: f"b{next(ids)}")
    second.m.restore()
    second.at(30).step(det("seg-1", Level.II, 30, capacity=3, sensor=1))
    actions = [c.action for c in second.journal.changes("a1")]
    assert actions[:1] == ["raised"] and "level_up" in actions and "uncertain" in actions


def test_a_zone_hovering_at_an_acknowledged_level_is_not_escalated(rig: Rig) -> None:
    rig.step(det("seg-1", Level.II, 0))
    rig.at(30).m.acknowledge("a1", "ann", "")
    for t in range(60, 1200, 60):  # II, III, II, III ... for 20 minutes
        rig.at(t).step(det("seg-1", Level.II if t % 120 == 0 else Level.III, t))
    assert [n.kind for n in rig.sent] == ["raised"]  # within the II orange acknowledgement (1200 s): quiet


def test_manager_state_is_written_only_when_it_changes(rig: Rig) -> None:
    writes: list[str] = []
    save = rig.journal.save_state

    def counting(name: str, data: dict[str, Any]) -> None:
        writes.append(name)
        save(name, data)

    rig.journal.save_state = counting  # type: ignore[method-assign]
    rig.step(det("seg-1", Level.III, 0))
    assert writes == ["manager"]
    for t in range(5, 60, 5):
        rig.at(t).step(det("seg-1", Level.III, t))  # nothing new to remember
    assert writes == ["manager"]
    rig.at(60).m.acknowledge("a1", "ann", "")
    assert writes == ["manager", "manager"]
