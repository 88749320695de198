"""The alert journal: alerts, every change to them, notifications, delivery attempts, silences, planned
events, emergency modes, the audit log and small service state, kept in one SQLite file.

A restarted service reads back its open alerts, the last notification of each alert or incident (so nothing
already delivered is sent again), the active silences and events and the emergency modes. Each row holds the
value as msgspec JSON (`data`) beside the columns that queries filter on; a row whose JSON cannot be read is
skipped, counted in `Journal.skipped` and logged, so one bad row never stops a restart.

Used from the service's event loop thread only: each call is one short transaction (alerts come at tens per
minute at worst). A file runs in WAL mode with synchronous=NORMAL: a commit does not wait for the disk, and a
power cut loses at most the last moments, never the file. See docs/audit.md for the tables and pruning.

>>> from domain.levels import Level
>>> from domain.values import Alert, AlertChange
>>> j = Journal(":memory:")
>>> a = Alert(id="a1", zone="plaza", level=Level.II, peak_level=Level.II, cause="density", state="raised",
...           opened_at=10.0, updated_at=10.0)
>>> j.save_alert(a, [AlertChange(ts=10.0, state="raised", level=Level.II, action="raised")])
>>> [x.id for x in j.load_open_alerts()], [c.action for c in j.changes("a1")]
(['a1'], ['raised'])
>>> j.close()
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import msgspec

from alerts.model import AuditEntry, DeliveryAttempt, EmergencyMode, Notification, PlannedEvent, Silence
from domain.levels import Level
from domain.values import Alert, AlertChange

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY, zone TEXT NOT NULL, grid TEXT NOT NULL, micro_grid TEXT NOT NULL,
    state TEXT NOT NULL, level INTEGER NOT NULL, peak_level INTEGER NOT NULL, cause TEXT NOT NULL,
    opened_at REAL NOT NULL, updated_at REAL NOT NULL, resolved_at REAL,
    acknowledged_at REAL, acknowledged_by TEXT NOT NULL, incident TEXT, data TEXT NOT NULL
);
CREATE INDEX alerts_open ON alerts (opened_at) WHERE state != 'resolved';
CREATE INDEX alerts_opened ON alerts (opened_at);
CREATE INDEX alerts_zone ON alerts (zone, opened_at);
CREATE INDEX alerts_grid ON alerts (grid, opened_at);
CREATE INDEX alerts_micro_grid ON alerts (micro_grid, opened_at);
CREATE INDEX alerts_incident ON alerts (incident) WHERE incident IS NOT NULL;
CREATE TABLE alert_changes (
    seq INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, ts REAL NOT NULL, action TEXT NOT NULL,
    state TEXT NOT NULL, level INTEGER NOT NULL, by_person TEXT NOT NULL, data TEXT NOT NULL,
    UNIQUE (alert_id, data)
);
CREATE TABLE notifications (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, key TEXT NOT NULL, kind TEXT NOT NULL,
    level INTEGER NOT NULL, step INTEGER NOT NULL, created_at REAL NOT NULL, data TEXT NOT NULL
);
CREATE INDEX notifications_key ON notifications (key, created_at);
CREATE TABLE notification_alerts (
    alert_id TEXT NOT NULL, notification_id TEXT NOT NULL, PRIMARY KEY (alert_id, notification_id)
) WITHOUT ROWID;
CREATE TABLE delivery_attempts (
    seq INTEGER PRIMARY KEY, notification_id TEXT NOT NULL, person TEXT NOT NULL, channel TEXT NOT NULL,
    attempt INTEGER NOT NULL, at REAL NOT NULL, ok INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX delivery_attempts_notification ON delivery_attempts (notification_id);
CREATE TABLE silences (
    id TEXT PRIMARY KEY, starts_at REAL NOT NULL, ends_at REAL NOT NULL, ended_at REAL,
    created_at REAL NOT NULL, data TEXT NOT NULL
);
CREATE TABLE planned_events (
    id TEXT PRIMARY KEY, starts_at REAL NOT NULL, ends_at REAL NOT NULL, ended_at REAL,
    created_at REAL NOT NULL, data TEXT NOT NULL
);
CREATE TABLE emergency_modes (scope TEXT PRIMARY KEY, since REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, data TEXT NOT NULL
);
CREATE INDEX audit_log_ts ON audit_log (ts);
CREATE INDEX audit_log_subject ON audit_log (subject, ts);
CREATE TABLE service_state (name TEXT PRIMARY KEY, data TEXT NOT NULL);
"""

_ALERT_COLS = (
    "id, zone, grid, micro_grid, state, level, peak_level, cause, opened_at, updated_at, resolved_at, "
    "acknowledged_at, acknowledged_by, incident, data"
)
_UPSERT_ALERT = (
    f"INSERT INTO alerts ({_ALERT_COLS}) VALUES ({', '.join('?' * 15)}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _ALERT_COLS.split(", ")[1:])
)

StateFilter = Literal["open", "resolved", "all"]
_STATE_WHERE: dict[str, str] = {"open": "state != 'resolved'", "resolved": "state = 'resolved'", "all": "1"}


class JournalError(Exception):
    """The journal file cannot be used as it is; the message says which file and what to do."""


class Journal:
    """Alerts and everything done about them, in SQLite. `path` is a file or ":memory:"."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.skipped: Counter[str] = Counter()  # table -> rows whose JSON could not be read (logged)
        self._conn: sqlite3.Connection | None = None
        self._dec_alert = msgspec.json.Decoder(Alert)
        self._dec_change = msgspec.json.Decoder(AlertChange)
        self._dec_notification = msgspec.json.Decoder(Notification)
        self._dec_attempt = msgspec.json.Decoder(DeliveryAttempt)
        self._dec_silence = msgspec.json.Decoder(Silence)
        self._dec_event = msgspec.json.Decoder(PlannedEvent)
        self._dec_emergency = msgspec.json.Decoder(EmergencyMode)
        self._dec_audit = msgspec.json.Decoder(AuditEntry)
        self._dec_state = msgspec.json.Decoder(dict[str, Any])
        self._enc = msgspec.json.Encoder()
        memory = self.path == ":memory:"
        if not memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly by _tx(), so the schema is created atomically.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")  # a CLI reading the file may hold a lock briefly
            if not memory:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
            self._open_schema()
        except sqlite3.DatabaseError as e:
            conn.close()
            self._conn = None
            raise JournalError(
                f"alert journal {self.path} cannot be opened as SQLite ({e}): move the file aside or give the "
                "journal another path"
            ) from e
        except JournalError:
            conn.close()
            self._conn = None
            raise

    # ---- lifecycle ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file. Safe to call twice; any other call afterwards raises JournalError."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError(f"alert journal {self.path} is closed: open a new Journal")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _open_schema(self) -> None:
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if tables:
                raise JournalError(
                    f"{self.path} is an SQLite file but not an alert journal (tables: {', '.join(sorted(tables))}):"
                    " give the journal a file of its own"
                )
            with self._tx() as tx:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        tx.execute(stmt)
                tx.execute("INSERT INTO schema_version (id, version) VALUES (1, ?)", (SCHEMA_VERSION,))
            return
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else None
        if not isinstance(version, int):
            raise JournalError(
                f"alert journal {self.path} has no readable schema version ({version!r}): move the file aside"
            )
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"alert journal {self.path} was written by schema version {version}, newer than this crowdflow "
                f"reads (version {SCHEMA_VERSION}): upgrade crowdflow, or point the journal at another file"
            )
        if version < SCHEMA_VERSION:
            raise JournalError(
                f"alert journal {self.path} has schema version {version} and this crowdflow has no migration "
                f"from it to version {SCHEMA_VERSION}: move the file aside to start a new journal"
            )

    # ---- encoding -----------------------------------------------------------------------------------

    def _encode(self, value: object, decoder: msgspec.json.Decoder[Any], what: str) -> str:
        """JSON for a row, checked to read back: a NaN (written as null) must fail here, not at restart."""
        data = self._enc.encode(value)
        try:
            decoder.decode(data)
        except msgspec.DecodeError as e:
            raise ValueError(f"cannot store {what}: it would not read back ({e}); is a number NaN or infinite?") from e
        return data.decode()

    def _decode(self, decoder: msgspec.json.Decoder[_T], table: str, key: object, data: object) -> _T | None:
        try:
            if not isinstance(data, str | bytes):
                raise TypeError(f"data is {type(data).__name__}, not JSON text")
            return decoder.decode(data)
        except (msgspec.DecodeError, TypeError) as e:
            self.skipped[table] += 1
            log.warning("alert journal %s: skipped unreadable row %r in table %s: %s", self.path, key, table, e)
            return None

    def _decode_all(self, decoder: msgspec.json.Decoder[_T], table: str, rows: Iterator[Any] | list[Any]) -> list[_T]:
        out: list[_T] = []
        for key, data in rows:
            v = self._decode(decoder, table, key, data)
            if v is not None:
                out.append(v)
        return out

    # ---- alerts -------------------------------------------------------------------------------------

    def save_alert(self, a: Alert, changes: Sequence[AlertChange] = ()) -> None:
        """Insert or update the alert and append `changes` (a change already stored is not stored twice)."""
        stored = _finite_evidence(a)
        data = self._encode(stored, self._dec_alert, f"alert {a.id!r}")
        rows = [(c, self._encode(c, self._dec_change, f"a change of alert {a.id!r}")) for c in changes]
        with self._tx() as tx:
            tx.execute(
                _UPSERT_ALERT,
                (
                    a.id, a.zone, a.grid, a.micro_grid, a.state, int(a.level), int(a.peak_level), a.cause,
                    a.opened_at, a.updated_at, a.resolved_at, a.acknowledged_at, a.acknowledged_by, a.incident,
                    data,
                ),
            )  # fmt: skip
            tx.executemany(
                "INSERT OR IGNORE INTO alert_changes (alert_id, ts, action, state, level, by_person, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(a.id, c.ts, c.action, c.state, int(c.level), c.by, d) for c, d in rows],
            )

    def load_open_alerts(self) -> list[Alert]:
        """Every alert not resolved, oldest first."""
        rows = self._db.execute(
            "SELECT id, data FROM alerts WHERE state != 'resolved' ORDER BY opened_at, id"
        ).fetchall()
        return self._decode_all(self._dec_alert, "alerts", rows)

    def get_alert(self, alert_id: str) -> Alert | None:
        row = self._db.execute("SELECT data FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else self._decode(self._dec_alert, "alerts", alert_id, row[0])

    def changes(self, alert_id: str) -> list[AlertChange]:
        """Every change ever stored for the alert, in the order stored."""
        rows = self._db.execute(
            "SELECT seq, data FROM alert_changes WHERE alert_id = ? ORDER BY seq", (alert_id,)
        ).fetchall()
        return self._decode_all(self._dec_change, "alert_changes", rows)

    def query_alerts(
        self,
        *,
        state: StateFilter = "all",
        zone: str | None = None,
        grid: str | None = None,
        micro_grid: str | None = None,
        cause: str | None = None,
        min_level: Level = Level.NORMAL,
        since: float | None = None,
        until: float | None = None,
        limit: int = 200,
    ) -> list[Alert]:
        """Alerts opened in [since, until), newest first; `min_level` compares the peak level."""
        if state not in _STATE_WHERE:
            raise ValueError(f"state must be one of open, resolved, all; got {state!r}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        where = [_STATE_WHERE[state], "peak_level >= ?"]
        args: list[object] = [int(min_level)]
        for col, value in (("zone", zone), ("grid", grid), ("micro_grid", micro_grid), ("cause", cause)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if since is not None:
            where.append("opened_at >= ?")
            args.append(since)
        if until is not None:
            where.append("opened_at < ?")
            args.append(until)
        sql = f"SELECT id, data FROM alerts WHERE {' AND '.join(where)} ORDER BY opened_at DESC, id DESC LIMIT ?"
        rows = self._db.execute(sql, (*args, limit)).fetchall()
        return self._decode_all(self._dec_alert, "alerts", rows)

    # ---- notifications and delivery -------------------------------------------------------------------

    def record_notification(self, n: Notification) -> None:
        """Store a notification (again under the same id: replaced, keeping its place in the order)."""
        data = self._encode(n, self._dec_notification, f"notification {n.id!r}")
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO notifications (id, key, kind, level, step, created_at, data) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET key = excluded.key, kind = excluded.kind, level = excluded.level,"
                " step = excluded.step, created_at = excluded.created_at, data = excluded.data",
                (n.id, n.key, n.kind, int(n.level), n.step, n.created_at, data),
            )
            tx.execute("DELETE FROM notification_alerts WHERE notification_id = ?", (n.id,))
            tx.executemany(
                "INSERT OR IGNORE INTO notification_alerts (alert_id, notification_id) VALUES (?, ?)",
                [(alert_id, n.id) for alert_id in n.alert_ids],
            )

    def notifications(self, key: str | None = None, alert_id: str | None = None) -> list[Notification]:
        """Notifications, oldest first, for a key and/or an alert (any of its alert_ids), or all."""
        where: list[str] = ["1"]
        args: list[object] = []
        if key is not None:
            where.append("n.key = ?")
            args.append(key)
        if alert_id is not None:
            where.append("n.id IN (SELECT notification_id FROM notification_alerts WHERE alert_id = ?)")
            args.append(alert_id)
        rows = self._db.execute(
            f"SELECT n.id, n.data FROM notifications n WHERE {' AND '.join(where)} ORDER BY n.created_at, n.seq",
            args,
        ).fetchall()
        return self._decode_all(self._dec_notification, "notifications", rows)

    def last_notifications(self) -> dict[str, Notification]:
        """The latest notification of each key (by created_at, then by order stored).

        When the latest row of a key cannot be read, the latest readable one before it stands in.
        """
        rows = self._db.execute(
            "SELECT id, key, data FROM (SELECT id, key, data, ROW_NUMBER() OVER "
            "(PARTITION BY key ORDER BY created_at DESC, seq DESC) AS rn FROM notifications) WHERE rn = 1"
        ).fetchall()
        out: dict[str, Notification] = {}
        for nid, key, data in rows:
            n = self._decode(self._dec_notification, "notifications", nid, data)
            if n is None:
                n = self._latest_readable(key, nid)
            if n is not None:
                out[key] = n
        return out

    def _latest_readable(self, key: str, unreadable_id: str) -> Notification | None:
        for nid, data in self._db.execute(
            "SELECT id, data FROM notifications WHERE key = ? AND id != ? ORDER BY created_at DESC, seq DESC",
            (key, unreadable_id),
        ):
            n = self._decode(self._dec_notification, "notifications", nid, data)
            if n is not None:
                return n
        return None

    def record_attempt(self, a: DeliveryAttempt) -> None:
        data = self._encode(a, self._dec_attempt, f"delivery attempt of notification {a.notification_id!r}")
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO delivery_attempts (notification_id, person, channel, attempt, at, ok, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (a.notification_id, a.person, a.channel, a.attempt, a.at, int(a.ok), data),
            )

    def attempts(self, notification_id: str | None = None, alert_id: str | None = None) -> list[DeliveryAttempt]:
        """Delivery attempts, oldest first, of a notification and/or of the notifications about an alert."""
        where: list[str] = ["1"]
        args: list[object] = []
        if notification_id is not None:
            where.append("notification_id = ?")
            args.append(notification_id)
        if alert_id is not None:
            where.append("notification_id IN (SELECT notification_id FROM notification_alerts WHERE alert_id = ?)")
            args.append(alert_id)
        rows = self._db.execute(
            f"SELECT seq, data FROM delivery_attempts WHERE {' AND '.join(where)} ORDER BY at, seq", args
        ).fetchall()
        return self._decode_all(self._dec_attempt, "delivery_attempts", rows)

    # ---- silences, planned events, emergency modes ----------------------------------------------------

    def save_silence(self, s: Silence) -> None:
        data = self._encode(s, self._dec_silence, f"silence {s.id!r}")
        self._upsert_window("silences", s.id, s.starts_at, s.ends_at, s.ended_at, s.created_at, data)

    def silences(self, active_at: float | None = None) -> list[Silence]:
        """All silences, or those active at `active_at`; by start time."""
        return self._decode_all(self._dec_silence, "silences", self._windows("silences", active_at))

    def get_silence(self, silence_id: str) -> Silence | None:
        row = self._db.execute("SELECT data FROM silences WHERE id = ?", (silence_id,)).fetchone()
        return None if row is None else self._decode(self._dec_silence, "silences", silence_id, row[0])

    def save_event(self, e: PlannedEvent) -> None:
        data = self._encode(e, self._dec_event, f"planned event {e.id!r}")
        self._upsert_window("planned_events", e.id, e.starts_at, e.ends_at, e.ended_at, e.created_at, data)

    def events(self, active_at: float | None = None) -> list[PlannedEvent]:
        """All planned events, or those active at `active_at`; by start time."""
        return self._decode_all(self._dec_event, "planned_events", self._windows("planned_events", active_at))

    def get_event(self, event_id: str) -> PlannedEvent | None:
        row = self._db.execute("SELECT data FROM planned_events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else self._decode(self._dec_event, "planned_events", event_id, row[0])

    def _upsert_window(
        self, table: str, id_: str, starts: float, ends: float, ended: float | None, created: float, data: str
    ) -> None:
        with self._tx() as tx:
            tx.execute(
                f"INSERT INTO {table} (id, starts_at, ends_at, ended_at, created_at, data) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET starts_at = excluded.starts_at, ends_at = excluded.ends_at,"
                " ended_at = excluded.ended_at, created_at = excluded.created_at, data = excluded.data",
                (id_, starts, ends, ended, created, data),
            )

    def _windows(self, table: str, active_at: float | None) -> list[Any]:
        # Same rule as Silence.active / PlannedEvent.active: not ended by hand, starts_at <= t < ends_at.
        if active_at is None:
            return self._db.execute(f"SELECT id, data FROM {table} ORDER BY starts_at, id").fetchall()
        return self._db.execute(
            f"SELECT id, data FROM {table} WHERE ended_at IS NULL AND starts_at <= ? AND ? < ends_at "
            "ORDER BY starts_at, id",
            (active_at, active_at),
        ).fetchall()

    def save_emergency(self, modes: Sequence[EmergencyMode]) -> None:
        """Replace the stored modes with `modes`, the scopes in emergency now (the audit log keeps the past)."""
        rows = [(m.scope, m.since, self._encode(m, self._dec_emergency, f"emergency mode {m.scope!r}")) for m in modes]
        with self._tx() as tx:
            tx.execute("DELETE FROM emergency_modes")
            tx.executemany("INSERT OR REPLACE INTO emergency_modes (scope, since, data) VALUES (?, ?, ?)", rows)

    def emergency(self) -> list[EmergencyMode]:
        rows = self._db.execute("SELECT scope, data FROM emergency_modes ORDER BY since, scope").fetchall()
        return self._decode_all(self._dec_emergency, "emergency_modes", rows)

    # ---- audit log ------------------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        data = self._encode(entry, self._dec_audit, f"audit entry {entry.action!r} on {entry.subject!r}")
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO audit_log (ts, actor, action, subject, data) VALUES (?, ?, ?, ?, ?)",
                (entry.ts, entry.actor, entry.action, entry.subject, data),
            )

    def audit_log(self, subject: str | None = None, since: float | None = None, limit: int = 500) -> list[AuditEntry]:
        """Entries at or after `since`, for one subject or all, newest first (same time: latest stored first)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        where: list[str] = ["1"]
        args: list[object] = []
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        rows = self._db.execute(
            f"SELECT seq, data FROM audit_log WHERE {' AND '.join(where)} ORDER BY ts DESC, seq DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return self._decode_all(self._dec_audit, "audit_log", rows)

    # ---- small service state ----------------------------------------------------------------------------

    def save_state(self, name: str, data: dict[str, Any]) -> None:
        """Keep a small JSON-able dict under `name` (escalation timers, incidents), replacing the last one."""
        try:
            text = self._encode(data, self._dec_state, f"state {name!r}")
        except TypeError as e:
            raise ValueError(f"cannot store state {name!r}: it is not JSON-able ({e})") from e
        with self._tx() as tx:
            tx.execute("INSERT OR REPLACE INTO service_state (name, data) VALUES (?, ?)", (name, text))

    def load_state(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM service_state WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._decode(self._dec_state, "service_state", name, row[0])


def _finite_evidence(a: Alert) -> Alert:
    """The alert as stored: evidence numbers that are NaN or infinite (no value) are left out, since JSON has none."""
    if all(math.isfinite(v) for v in a.evidence.values()):
        return a
    return msgspec.structs.replace(a, evidence={k: v for k, v in a.evidence.items() if math.isfinite(v)})
