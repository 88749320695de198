"""The alert journal keeps everything through a close and reopen, filters as asked, and survives bad rows."""

from __future__ import annotations

import doctest
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import alerts.journal
from alerts.journal import SCHEMA_VERSION, Journal, JournalError
from alerts.model import (
    AuditEntry,
    DeliveryAttempt,
    EmergencyMode,
    Notification,
    PlannedEvent,
    Recipient,
    Silence,
)
from domain.levels import Level
from domain.values import Alert, AlertChange, Cause, Diversion

ANA = Recipient(person="ana", name="Ana", role="officer", channels=("ntfy://ntfy.example/duty",))


def make_alert(
    alert_id: str = "a1",
    *,
    zone: str = "plaza",
    grid: str = "g1",
    micro_grid: str = "g1-m1",
    level: Level = Level.II,
    peak: Level | None = None,
    cause: Cause = "density",
    opened_at: float = 100.0,
    resolved_at: float | None = None,
) -> Alert:
    return Alert(
        id=alert_id,
        zone=zone,
        grid=grid,
        micro_grid=micro_grid,
        level=Level.NORMAL if resolved_at is not None else level,
        peak_level=peak or level,
        cause=cause,
        state="resolved" if resolved_at is not None else "raised",
        opened_at=opened_at,
        updated_at=resolved_at or opened_at,
        resolved_at=resolved_at,
    )


def full_alert() -> Alert:
    """An alert with every optional field set, so a round trip checks them all."""
    return Alert(
        id="full",
        zone="s03",
        level=Level.I,
        peak_level=Level.I,
        cause="forecast",
        state="acknowledged",
        opened_at=1000.0,
        updated_at=1100.0,
        evidence={"share": 0.93, "eta_red_min": 12.5},
        message="reaches I red in about 12 min",
        history=[AlertChange(ts=1000.0, state="raised", level=Level.II, action="raised")],
        grid="lujiazui",
        micro_grid="riverside",
        signals={"forecast": 4, "sensor": 2},
        measures=["one-way flow", "hold crowds at Century Avenue"],
        diversion=[Diversion(zone="s05", name="Riverside S05", spare=1200, share=0.41)],
        acknowledged_at=1060.0,
        acknowledged_by="ana",
        ack_comment="on my way",
        escalated_at=1030.0,
        uncertain=True,
        uncertain_reason="counter c7 silent",
        inhibited_by="cap1",
        silenced_by="sil1",
        incident="inc1",
    )


def notification(nid: str, key: str, created_at: float, alert_ids: tuple[str, ...] = ("a1",)) -> Notification:
    return Notification(
        id=nid,
        key=key,
        alert_ids=alert_ids,
        zones=("plaza",),
        kind="raised",
        level=Level.II,
        step=0,
        title="II orange · Plaza",
        body="Plaza at 82 % of capacity: alternate the gates",
        reason="new alert",
        created_at=created_at,
        recipients=(ANA,),
        url="https://duty.example/a/a1",
    )


def attempt(nid: str, at: float, n: int = 1, ok: bool = True) -> DeliveryAttempt:
    return DeliveryAttempt(
        notification_id=nid,
        person="ana",
        channel="ntfy://ntfy.example",
        attempt=n,
        at=at,
        ok=ok,
        retryable=not ok,
        error="" if ok else "503 Service Unavailable",
        latency_ms=42.5,
    )


def silence(sid: str, starts: float, ends: float, ended_at: float | None = None) -> Silence:
    return Silence(
        id=sid,
        matchers={"grid": "g1", "cause": "density"},
        starts_at=starts,
        ends_at=ends,
        reason="maintenance of counters",
        created_by="op1",
        created_at=starts - 10,
        ended_at=ended_at,
        ended_by="op1" if ended_at else "",
        max_level=Level.III,
    )


def event(eid: str, starts: float, ends: float) -> PlannedEvent:
    return PlannedEvent(
        id=eid,
        name="Fireworks",
        zones=("s03", "s04"),
        starts_at=starts,
        ends_at=ends,
        flow_factor=2.5,
        reason="National Day show",
        created_by="op1",
        created_at=starts - 3600,
        share=(0.5, 0.6, 0.75, 0.9),
        density=(1.0, 2.0, 3.0, 4.0),
    )


# ---- round trips ------------------------------------------------------------------------------------


def test_every_stored_type_survives_close_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "journal" / "alerts.sqlite"  # the folder is created
    a = full_alert()
    changes = [
        AlertChange(ts=1000.0, state="raised", level=Level.II, action="raised"),
        AlertChange(ts=1030.0, state="escalated", level=Level.I, note="II orange → I red", action="level_up"),
        AlertChange(ts=1060.0, state="acknowledged", level=Level.I, note="on my way", by="ana", action="acknowledged"),
    ]
    n = notification("n1", "full", 1001.0, alert_ids=("full", "other"))
    att = attempt("n1", 1002.0, ok=False)
    sil, ev = silence("sil1", 900.0, 4500.0), event("ev1", 2000.0, 9000.0)
    modes = [
        EmergencyMode(scope="district", since=1200.0, by="cmd", reason="crowd at the Bund"),
        EmergencyMode(scope="lujiazui", since=1100.0, by="cmd", reason="riverside red"),
    ]
    entry = AuditEntry(ts=1060.0, actor="ana", action="alert.acknowledged", subject="full", detail={"comment": "ok"})
    state = {"timers": {"full": [1, 1180.0]}, "incidents": [{"id": "inc1", "zones": ["s03", "s04"]}]}

    with Journal(db) as j:
        j.save_alert(a, changes)
        j.record_notification(n)
        j.record_attempt(att)
        j.save_silence(sil)
        j.save_event(ev)
        j.save_emergency(modes)
        j.audit(entry)
        j.save_state("escalation", state)

    with Journal(db) as j:
        assert j.get_alert("full") == a
        assert j.load_open_alerts() == [a]
        assert j.changes("full") == changes
        assert j.notifications() == [n]
        assert j.last_notifications() == {"full": n}
        assert j.attempts() == [att]
        assert j.silences() == [sil] and j.get_silence("sil1") == sil
        assert j.events() == [ev] and j.get_event("ev1") == ev
        assert j.emergency() == [modes[1], modes[0]]  # by the time each began
        assert j.audit_log() == [entry]
        assert j.load_state("escalation") == state
        assert j.skipped == {}


def test_file_is_in_wal_mode_with_a_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite"
    Journal(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


def test_an_update_replaces_the_alert_and_changes_accumulate_without_duplicates() -> None:
    with Journal(":memory:") as j:
        a = make_alert()
        raised = AlertChange(ts=100.0, state="raised", level=Level.II, action="raised")
        j.save_alert(a, [raised])
        a.state, a.level, a.peak_level, a.updated_at = "escalated", Level.I, Level.I, 160.0
        up = AlertChange(ts=160.0, state="escalated", level=Level.I, action="level_up")
        j.save_alert(a, [raised, up])  # the caller resends a change already stored (e.g. after a retry)
        assert j.get_alert("a1") == a
        assert [c.action for c in j.changes("a1")] == ["raised", "level_up"]
        assert j.query_alerts(min_level=Level.I) == [a]


def test_changes_are_kept_beyond_the_alerts_capped_history() -> None:
    with Journal(":memory:") as j:
        a = make_alert()
        for i in range(150):
            a.history = a.history[-5:]  # what the book keeps in memory stays short
            change = AlertChange(ts=100.0 + i, state="raised", level=Level.II, note=f"comment {i}", action="commented")
            a.history.append(change)
            j.save_alert(a, [change])
        stored = j.get_alert("a1")
        assert stored is not None and len(stored.history) == 6
        assert [c.note for c in j.changes("a1")] == [f"comment {i}" for i in range(150)]


def test_unknown_ids_read_as_none_or_empty() -> None:
    with Journal(":memory:") as j:
        assert j.get_alert("nope") is None
        assert j.changes("nope") == []
        assert j.get_silence("nope") is None and j.get_event("nope") is None
        assert j.load_state("nope") is None
        assert j.last_notifications() == {}


def test_nan_evidence_is_left_out_so_the_alert_reads_back() -> None:
    with Journal(":memory:") as j:
        a = make_alert()
        a.evidence = {"share": 0.8, "eta_red_min": math.nan, "inflow": math.inf}
        j.save_alert(a)
        got = j.get_alert("a1")
        assert got is not None and got.evidence == {"share": 0.8}
        assert a.evidence["inflow"] == math.inf  # the caller's alert is untouched


def test_a_value_that_would_not_read_back_is_refused_at_save_time() -> None:
    with Journal(":memory:") as j:
        bad = msgspec.structs.replace(attempt("n1", 5.0), latency_ms=math.nan)
        with pytest.raises(ValueError, match=r"delivery attempt of notification 'n1'.*NaN"):
            j.record_attempt(bad)
        assert j.attempts() == []
        with pytest.raises(ValueError, match="state 'timers': it is not JSON-able"):
            j.save_state("timers", {"at": object()})


# ---- queries ------------------------------------------------------------------------------------------


@pytest.fixture
def stocked() -> Iterator[Journal]:
    j = Journal(":memory:")
    j.save_alert(make_alert("old", zone="plaza", level=Level.III, opened_at=100.0, resolved_at=400.0))
    j.save_alert(
        make_alert("red", zone="s03", grid="g2", micro_grid="g2-r", level=Level.I, cause="surge", opened_at=200.0)
    )
    j.save_alert(
        make_alert("down", zone="s04", grid="g2", micro_grid="g2-r", level=Level.IV, peak=Level.II, opened_at=300.0)
    )
    j.save_alert(make_alert("blue", zone="gate", level=Level.IV, cause="sensor", opened_at=500.0))
    yield j
    j.close()


def ids(alerts: list[Alert]) -> list[str]:
    return [a.id for a in alerts]


def test_query_filters(stocked: Journal) -> None:
    j = stocked
    assert ids(j.query_alerts()) == ["blue", "down", "red", "old"]  # newest first
    assert ids(j.query_alerts(state="open")) == ["blue", "down", "red"]
    assert ids(j.query_alerts(state="resolved")) == ["old"]
    assert ids(j.query_alerts(zone="plaza")) == ["old"]
    assert ids(j.query_alerts(grid="g2")) == ["down", "red"]
    assert ids(j.query_alerts(micro_grid="g1-m1")) == ["blue", "old"]
    assert ids(j.query_alerts(cause="sensor")) == ["blue"]
    # min_level is the peak: "down" is IV blue now but was II orange
    assert ids(j.query_alerts(min_level=Level.II)) == ["down", "red"]
    assert ids(j.query_alerts(since=200.0, until=500.0)) == ["down", "red"]  # opened in [since, until)
    assert ids(j.query_alerts(limit=2)) == ["blue", "down"]
    assert ids(j.query_alerts(state="open", grid="g2", min_level=Level.I)) == ["red"]
    assert ids(j.load_open_alerts()) == ["red", "down", "blue"]  # oldest first


def test_query_rejects_bad_arguments_saying_what_is_allowed(stocked: Journal) -> None:
    with pytest.raises(ValueError, match="open, resolved, all"):
        stocked.query_alerts(state="closed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be at least 1"):
        stocked.query_alerts(limit=0)


def test_last_notifications_picks_the_latest_per_key() -> None:
    with Journal(":memory:") as j:
        j.record_notification(notification("n1", "a1", 10.0))
        j.record_notification(notification("n3", "a1", 30.0))
        j.record_notification(notification("n2", "a1", 20.0))  # stored late, but older
        j.record_notification(notification("i1", "inc1", 15.0, alert_ids=("a2", "a3")))
        j.record_notification(notification("i2", "inc1", 15.0, alert_ids=("a2", "a3")))  # same time: later stored
        last = j.last_notifications()
        assert {k: n.id for k, n in last.items()} == {"a1": "n3", "inc1": "i2"}
        assert [n.id for n in j.notifications(key="a1")] == ["n1", "n2", "n3"]  # oldest first
        assert [n.id for n in j.notifications(alert_id="a3")] == ["i1", "i2"]
        assert [n.id for n in j.notifications(key="a1", alert_id="a3")] == []


def test_recording_a_notification_again_replaces_it_and_its_alert_links() -> None:
    with Journal(":memory:") as j:
        j.record_notification(notification("n1", "inc1", 10.0, alert_ids=("a1", "a2")))
        j.record_notification(notification("n1", "inc1", 10.0, alert_ids=("a1", "a3")))
        assert [n.alert_ids for n in j.notifications()] == [("a1", "a3")]
        assert j.notifications(alert_id="a2") == []


def test_attempts_by_notification_and_by_alert_id() -> None:
    with Journal(":memory:") as j:
        j.record_notification(notification("n1", "a1", 10.0, alert_ids=("a1",)))
        j.record_notification(notification("n2", "inc1", 20.0, alert_ids=("a1", "a2")))
        j.record_notification(notification("n3", "a9", 30.0, alert_ids=("a9",)))
        j.record_attempt(attempt("n1", 11.0, 1, ok=False))
        j.record_attempt(attempt("n1", 13.0, 2))
        j.record_attempt(attempt("n2", 21.0))
        j.record_attempt(attempt("n3", 31.0))
        assert [(a.notification_id, a.attempt) for a in j.attempts(alert_id="a1")] == [("n1", 1), ("n1", 2), ("n2", 1)]
        assert [a.notification_id for a in j.attempts(alert_id="a2")] == ["n2"]
        assert [a.attempt for a in j.attempts(notification_id="n1")] == [1, 2]
        assert j.attempts(notification_id="n3", alert_id="a1") == []
        assert len(j.attempts()) == 4


def test_silences_and_events_active_at_a_time() -> None:
    with Journal(":memory:") as j:
        j.save_silence(silence("early", 0.0, 100.0))
        j.save_silence(silence("now", 50.0, 200.0))
        j.save_silence(silence("ended", 10.0, 300.0, ended_at=60.0))
        assert [s.id for s in j.silences(active_at=100.0)] == ["now"]  # ends_at is exclusive
        assert [s.id for s in j.silences(active_at=55.0)] == ["early", "now"]
        assert [s.id for s in j.silences()] == ["early", "ended", "now"]
        ended = j.get_silence("now")
        assert ended is not None
        ended.ended_at, ended.ended_by = 120.0, "op2"
        j.save_silence(ended)  # ending it by hand updates the row
        assert j.silences(active_at=150.0) == []
        assert j.get_silence("now") == ended

        j.save_event(event("fireworks", 1000.0, 2000.0))
        j.save_event(event("marathon", 1500.0, 5000.0))
        assert [e.id for e in j.events(active_at=1800.0)] == ["fireworks", "marathon"]
        assert [e.id for e in j.events(active_at=2000.0)] == ["marathon"]
        assert j.events(active_at=999.0) == []


def test_save_emergency_replaces_the_set_of_modes() -> None:
    with Journal(":memory:") as j:
        district = EmergencyMode(scope="district", since=10.0, by="cmd", reason="NYE")
        grid = EmergencyMode(scope="g1", since=20.0, by="cmd", reason="red at the plaza")
        j.save_emergency([district, grid])
        j.save_emergency([grid])  # the district switched back
        assert j.emergency() == [grid]
        j.save_emergency([])
        assert j.emergency() == []


def test_audit_log_newest_first_and_filtered() -> None:
    with Journal(":memory:") as j:
        entries = [
            AuditEntry(ts=10.0, actor="system", action="alert.raised", subject="a1"),
            AuditEntry(ts=20.0, actor="op1", action="silence.created", subject="sil1", detail={"reason": "works"}),
            AuditEntry(ts=30.0, actor="ana", action="alert.acknowledged", subject="a1"),
            AuditEntry(ts=30.0, actor="ana", action="alert.commented", subject="a1", detail={"text": "gates shut"}),
            AuditEntry(ts=40.0, actor="cmd", action="emergency.on", subject="district"),
        ]
        for e in entries:
            j.audit(e)
        assert [e.action for e in j.audit_log()] == [
            "emergency.on",
            "alert.commented",  # same second as the acknowledgement, written after it
            "alert.acknowledged",
            "silence.created",
            "alert.raised",
        ]
        assert [e.action for e in j.audit_log(subject="a1")] == [
            "alert.commented",
            "alert.acknowledged",
            "alert.raised",
        ]
        assert [e.ts for e in j.audit_log(since=30.0)] == [40.0, 30.0, 30.0]
        assert [e.ts for e in j.audit_log(subject="a1", since=20.0, limit=1)] == [30.0]
        assert j.audit_log(subject="a1", since=20.0, limit=1)[0].detail == {"text": "gates shut"}


def test_state_is_replaced_by_name() -> None:
    with Journal(":memory:") as j:
        j.save_state("escalation", {"a1": 1})
        j.save_state("escalation", {"a1": 2})
        j.save_state("incidents", {})
        assert j.load_state("escalation") == {"a1": 2}
        assert j.load_state("incidents") == {}


# ---- bad files and bad rows -----------------------------------------------------------------------------


def corrupt(db: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, args)
    conn.close()


def test_a_corrupt_row_is_skipped_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "alerts.sqlite"
    with Journal(db) as j:
        j.save_alert(make_alert("good", opened_at=100.0))
        j.save_alert(make_alert("bad", opened_at=200.0))
        j.audit(AuditEntry(ts=1.0, actor="system", action="alert.raised", subject="good"))
        j.audit(AuditEntry(ts=2.0, actor="system", action="alert.raised", subject="bad"))
        j.save_state("timers", {"good": 1})
    corrupt(db, "UPDATE alerts SET data = ? WHERE id = 'bad'", '{"id": "bad", "zone": ')  # cut off
    corrupt(db, "UPDATE audit_log SET data = ? WHERE subject = 'bad'", '{"ts": "yesterday"}')  # wrong type
    corrupt(db, "UPDATE service_state SET data = ?", "[1, 2]")  # not a dict

    caplog.set_level(logging.WARNING, logger="alerts.journal")
    with Journal(db) as j:
        assert ids(j.load_open_alerts()) == ["good"]
        assert ids(j.query_alerts()) == ["good"]
        assert j.get_alert("bad") is None
        assert [e.subject for e in j.audit_log()] == ["good"]
        assert j.load_state("timers") is None
        assert j.skipped == {"alerts": 3, "audit_log": 1, "service_state": 1}
    assert "skipped unreadable row 'bad' in table alerts" in caplog.text
    assert str(db) in caplog.text


def test_an_unreadable_latest_notification_falls_back_to_the_one_before(tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite"
    with Journal(db) as j:
        j.record_notification(notification("n1", "a1", 10.0))
        j.record_notification(notification("n2", "a1", 20.0))
        j.record_notification(notification("m1", "a2", 10.0, alert_ids=("a2",)))
    corrupt(db, "UPDATE notifications SET data = 'null' WHERE id IN ('n2', 'm1')")
    with Journal(db) as j:
        assert {k: n.id for k, n in j.last_notifications().items()} == {"a1": "n1"}
        assert j.skipped["notifications"] == 2


def test_a_file_from_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite"
    Journal(db).close()
    corrupt(db, "UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1)
    with pytest.raises(JournalError) as err:
        Journal(db)
    msg = str(err.value)
    assert str(db) in msg
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this crowdflow reads (version {SCHEMA_VERSION})" in msg
    assert "upgrade crowdflow" in msg


def test_an_older_schema_without_migration_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite"
    Journal(db).close()
    corrupt(db, "UPDATE schema_version SET version = ?", SCHEMA_VERSION - 1)
    with pytest.raises(JournalError, match=r"no migration .*move the file aside"):
        Journal(db)


def test_another_sqlite_file_or_a_non_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "history.sqlite"
    corrupt(other, "CREATE TABLE zone_state_1m (zone TEXT)")
    with pytest.raises(JournalError, match=r"not an alert journal \(tables: zone_state_1m\).*file of its own"):
        Journal(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just some text that is long enough to have a header" * 20)
    with pytest.raises(JournalError, match=r"junk\.sqlite cannot be opened as SQLite"):
        Journal(junk)


def test_a_closed_journal_says_so() -> None:
    j = Journal(":memory:")
    j.close()
    j.close()  # twice is fine
    with pytest.raises(JournalError, match="is closed"):
        j.load_open_alerts()


def test_an_alert_that_would_not_read_back_is_refused_with_its_changes() -> None:
    with Journal(":memory:") as j:
        a = make_alert()
        a.opened_at = math.nan  # refused before anything is written
        with pytest.raises(ValueError, match="alert 'a1'"):
            j.save_alert(a, [AlertChange(ts=1.0, state="raised", level=Level.II, action="raised")])
        assert j.get_alert("a1") is None and j.changes("a1") == []


def test_docstring_example() -> None:
    result = doctest.testmod(alerts.journal)
    assert result.attempted > 0 and result.failed == 0


def test_the_prune_script_in_the_docs_keeps_open_alerts_and_what_they_were_sent(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text(encoding="utf-8")
    script = doc.split("```sql\n", 1)[1].split("```", 1)[0]
    db = tmp_path / "alerts.sqlite"
    now = time.time()  # the script's cutoff is one year before the real now
    old = now - 400 * 86400
    with Journal(db) as j:
        j.save_alert(
            make_alert("old-resolved", opened_at=old, resolved_at=old + 100),
            [AlertChange(ts=old, state="raised", level=Level.II, action="raised")],
        )
        j.save_alert(make_alert("old-open", opened_at=old))
        j.save_alert(make_alert("new", opened_at=now - 10))
        for nid, key, at in (("n1", "old-resolved", old), ("n2", "old-open", old), ("n3", "new", now)):
            j.record_notification(notification(nid, key, at, alert_ids=(key,)))
            j.record_attempt(attempt(nid, at))
        j.save_silence(silence("old", old, old + 10))
        j.save_silence(silence("new", now, now + 10))
        j.audit(AuditEntry(ts=old, actor="ana", action="alert.acknowledged", subject="old-resolved"))
        j.audit(AuditEntry(ts=now, actor="ana", action="alert.acknowledged", subject="new"))

        shell = sqlite3.connect(db)  # another process's connection, like the sqlite3 shell
        shell.executescript(script)
        shell.close()

        assert ids(j.query_alerts()) == ["new", "old-open"]
        assert j.changes("old-resolved") == []
        assert sorted(j.last_notifications()) == ["new", "old-open"]  # a restart still knows what it sent
        assert [a.notification_id for a in j.attempts()] == ["n2", "n3"]
        assert [s.id for s in j.silences()] == ["new"]
        assert [e.subject for e in j.audit_log()] == ["new"]
