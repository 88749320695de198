"""The alert lifecycle: at most one open alert per zone, raised, changed in place, acknowledged, resolved.

- A detection at IV blue or worse for a zone with no open alert raises one (state "raised").
- A level change on an open alert updates that alert in place (never a second alert for the zone). Going up
  sets state "escalated", so an acknowledgement of a lesser level does not cover the worse one; going down
  keeps the state and is recorded in the history.
- A NORMAL detection resolves the open alert. Detect/ already debounces levels and holds them while sensors
  are silent; a NORMAL whose evidence says healthy = 0 (e.g. a grader fresh after a restart, zones still
  silent) is not taken as calm either.
- The same level again refreshes evidence, message and signals silently: observe() returns lifecycle changes
  only, so the push stream is not flooded every tick.
- People: acknowledge (with an optional comment), comment, resolve by hand (a comment is required). A zone
  closed by hand is not re-raised at the same or a lower level until it has been calm once: the officer who
  closed it said why, and an alert straight back would be noise. A worse level raises a new alert at once.
- reraise(): an acknowledgement that ran out on a still-open alert puts it back to "raised".
- annotate(): a note in the history for what the manager decided about the alert (uncertain, inhibited,
  silenced and back), so the audit trail shows why an alert was or was not pushed.

Memory is bounded: at most `max_resolved` resolved alerts are kept, and each alert's history keeps its
first entry and the latest `max_history - 1`.

>>> from domain.loader import load_site
>>> from domain.values import Detection
>>> ids = iter(["a1"])
>>> book = AlertBook(load_site("tests/fixtures/mini_site.toml"), id_factory=lambda: next(ids))
>>> [(a.id, a.state, a.level.label) for a in book.observe([Detection(zone="plaza", ts=1.0, level=Level.III,
...     cause="density")])]
[('a1', 'raised', 'III yellow')]
>>> [(a.id, a.state, a.level.label) for a in book.observe([Detection(zone="plaza", ts=2.0, level=Level.II,
...     cause="density")])]
[('a1', 'escalated', 'II orange')]
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from domain.levels import Level
from domain.site import Site
from domain.values import Alert, AlertAction, AlertChange, Detection

SNAPSHOT_VERSION = 1


def _new_id() -> str:
    return uuid.uuid4().hex


def _acknowledged_level(a: Alert) -> Level:
    return max((c.level for c in a.history if c.action == "acknowledged"), default=Level.NORMAL)


class AlertBook:
    """All alerts, keyed by id, with the open one of each zone."""

    def __init__(
        self,
        site: Site,
        *,
        id_factory: Callable[[], str] | None = None,
        max_resolved: int = 1000,
        max_history: int = 100,
    ) -> None:
        if max_resolved < 0 or max_history < 2:
            raise ValueError(f"max_resolved must be >= 0 and max_history >= 2, got {max_resolved}, {max_history}")
        self.site = site
        self._new_id = id_factory or _new_id
        self.max_resolved = max_resolved
        self.max_history = max_history
        self._alerts: dict[str, Alert] = {}
        self._open: dict[str, str] = {}  # zone -> id of its open alert
        self._resolved: deque[str] = deque()  # ids of resolved alerts, oldest first
        self._closed_by_hand: dict[str, Level] = {}  # zone -> level at which a person closed its alert
        self.rejected: Counter[str] = Counter()  # reason -> detections not applied; exported as a metric

    # ---- detections in --------------------------------------------------------------------------

    def observe(self, detections: Iterable[Detection]) -> list[Alert]:
        """Apply detections; return the alerts whose lifecycle changed (raised, level changed, resolved)."""
        changed: dict[str, Alert] = {}
        for d in detections:
            a = self._observe_one(d)
            if a is not None:
                changed[a.id] = a
        return list(changed.values())

    def _observe_one(self, d: Detection) -> Alert | None:
        if d.zone not in self.site.zones:
            self.rejected["unknown_zone"] += 1
            return None
        open_id = self._open.get(d.zone)
        if open_id is None:
            closed = self._closed_by_hand.get(d.zone)
            if closed is not None:
                if d.level is Level.NORMAL:
                    del self._closed_by_hand[d.zone]  # calm once: the next alert is a new situation
                elif d.level <= closed:
                    self.rejected["closed_by_hand"] += 1
                    return None
                else:
                    del self._closed_by_hand[d.zone]
            return self._raise(d) if d.level >= Level.IV else None
        a = self._alerts[open_id]
        if d.ts < a.updated_at:
            self.rejected["stale_detection"] += 1  # older than what the alert already shows
            return None
        if d.level is Level.NORMAL:
            if d.evidence.get("healthy", 1.0) == 0.0:
                # NORMAL from a zone whose sensors are silent or faulty is not calm: keep the alert open.
                self.rejected["normal_while_unhealthy"] += 1
                return None
            return self._resolve(a, d)
        if d.level == a.level:
            # Fresher numbers, not a lifecycle change; the cause too: a bridge forecast to reach I red that is
            # now measured at I red must read "capacity", with the measured message, not the old forecast.
            a.cause = d.cause
            a.evidence = dict(d.evidence)
            a.message = d.message
            a.signals = dict(d.signals)
            return None
        return self._change_level(a, d)

    def _raise(self, d: Detection) -> Alert:
        zone = self.site.zones[d.zone]
        a = Alert(
            id=self._new_id(),
            zone=d.zone,
            grid=zone.grid,
            micro_grid=zone.micro_grid,
            signals=dict(d.signals),
            level=d.level,
            peak_level=d.level,
            cause=d.cause,
            state="raised",
            opened_at=d.ts,
            updated_at=d.ts,
            evidence=dict(d.evidence),
            message=d.message,
            history=[AlertChange(ts=d.ts, state="raised", level=d.level, note=d.message, action="raised")],
            revision=1,
        )
        if a.id in self._alerts:
            raise ValueError(f"id_factory returned {a.id!r} twice; alert ids must be unique")
        self._alerts[a.id] = a
        self._open[d.zone] = a.id
        return a

    def _change_level(self, a: Alert, d: Detection) -> Alert:
        up = d.level > a.level
        note = f"{a.level.label} → {d.level.label}"
        if up and not (a.state == "acknowledged" and d.level <= _acknowledged_level(a)):
            # Back up to a level someone already took needs no new acknowledgement; a worse one does.
            a.state = "escalated"
            a.escalated_at = d.ts
        a.level = d.level
        a.peak_level = max(a.peak_level, d.level)
        a.cause = d.cause
        a.evidence = dict(d.evidence)
        a.message = d.message
        a.signals = dict(d.signals)
        a.updated_at = d.ts
        action: AlertAction = "level_up" if up else "level_down"
        self._record(a, AlertChange(ts=d.ts, state=a.state, level=d.level, note=note, action=action))
        return a

    def _resolve(self, a: Alert, d: Detection) -> Alert:
        a.evidence = dict(d.evidence)
        a.message = d.message
        a.signals = {}
        return self._close(a, d.ts, d.message, by="")

    def _close(self, a: Alert, ts: float, note: str, by: str) -> Alert:
        a.state = "resolved"
        a.level = Level.NORMAL
        a.resolved_at = ts
        a.updated_at = max(a.updated_at, ts)
        a.resolved_by = by
        self._record(a, AlertChange(ts=ts, state="resolved", level=Level.NORMAL, note=note, by=by, action="resolved"))
        del self._open[a.zone]
        self._retire(a.id)
        return a

    def _retire(self, alert_id: str) -> None:
        self._resolved.append(alert_id)
        while len(self._resolved) > self.max_resolved:
            self._alerts.pop(self._resolved.popleft(), None)

    def _record(self, a: Alert, change: AlertChange) -> None:
        a.history.append(change)
        a.revision = max(a.revision, len(a.history) - 1) + 1
        if len(a.history) > self.max_history:
            del a.history[1]  # keep how it started; drop the oldest change after that

    # ---- people -------------------------------------------------------------------------------

    def _person_action(self, alert_id: str, by: str, *, must_be_open: bool) -> Alert:
        a = self._alerts.get(alert_id)
        if a is None:
            raise KeyError(f"no alert {alert_id!r} (unknown, or resolved long ago and dropped)")
        if must_be_open and not a.open:
            raise ValueError(f"alert {alert_id!r} for zone {a.zone!r} is already resolved")
        if not by.strip():
            raise ValueError("say who is acting (by): an action nobody signed cannot be audited")
        return a

    def acknowledge(self, alert_id: str, by: str, note: str, now: float) -> Alert:
        """An officer takes the alert. KeyError for an unknown id, ValueError for a resolved or already
        acknowledged one (nothing to take over: the acknowledgement stands, with who and when)."""
        a = self._person_action(alert_id, by, must_be_open=True)
        if a.state == "acknowledged":
            raise ValueError(
                f"alert {alert_id!r} is already acknowledged by {a.acknowledged_by} at level {a.level.label}; "
                "add a comment instead"
            )
        a.state = "acknowledged"
        a.acknowledged_at = now if a.acknowledged_at is None else a.acknowledged_at  # first response counts
        a.acknowledged_by = a.acknowledged_by or by
        a.ack_comment = note
        a.updated_at = max(a.updated_at, now)
        self._record(
            a, AlertChange(ts=now, state="acknowledged", level=a.level, note=note, by=by, action="acknowledged")
        )
        return a

    def comment(self, alert_id: str, by: str, text: str, now: float) -> Alert:
        """A note on the alert, open or resolved (a debrief after the fact is welcome)."""
        if not text.strip():
            raise ValueError("a comment needs text")
        a = self._person_action(alert_id, by, must_be_open=False)
        self._record(a, AlertChange(ts=now, state=a.state, level=a.level, note=text, by=by, action="commented"))
        return a

    def resolve(self, alert_id: str, by: str, comment: str, now: float) -> Alert:
        """A person closes the alert, saying why. Same or lower levels in the zone stay closed until it has
        been calm once; a worse level raises a new alert."""
        if not comment.strip():
            raise ValueError("closing an alert by hand needs a comment saying why (e.g. 'crowd dispersed, checked')")
        a = self._person_action(alert_id, by, must_be_open=True)
        self._closed_by_hand[a.zone] = max(a.level, self._closed_by_hand.get(a.zone, Level.NORMAL))
        a.resolve_comment = comment
        return self._close(a, max(now, a.updated_at), comment, by=by)

    def reraise(self, alert_id: str, now: float, note: str) -> Alert | None:
        """An acknowledgement ran out and the alert is still open: back to raised. None if not applicable."""
        a = self._alerts.get(alert_id)
        if a is None or a.state != "acknowledged":
            return None
        a.state = "raised"
        a.updated_at = max(a.updated_at, now)
        self._record(a, AlertChange(ts=now, state="raised", level=a.level, note=note, action="reraised"))
        return a

    def annotate(self, a: Alert, action: AlertAction, note: str, now: float) -> None:
        """Record a decision about the alert in its history (no state change)."""
        self._record(a, AlertChange(ts=now, state=a.state, level=a.level, note=note, action=action))

    # ---- reading --------------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    def open_alerts(self) -> list[Alert]:
        """Open alerts, most severe first, then most recently changed."""
        out = [self._alerts[i] for i in self._open.values()]
        out.sort(key=lambda a: (a.level, a.updated_at), reverse=True)
        return out

    def open_for(self, zone_id: str) -> Alert | None:
        i = self._open.get(zone_id)
        return None if i is None else self._alerts[i]

    def recent(self, limit: int = 200) -> list[Alert]:
        """Open alerts first (most severe, then newest), then resolved ones, newest first."""
        out = sorted(self._alerts.values(), key=lambda a: (a.open, a.level, a.updated_at), reverse=True)
        return out[: max(limit, 0)]

    # ---- restart --------------------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """Plain JSON-able dict: every kept alert and which are resolved, oldest resolved first."""
        return {
            "version": SNAPSHOT_VERSION,
            "alerts": [msgspec.to_builtins(a) for a in self._alerts.values()],
            "resolved": list(self._resolved),
            "rejected": dict(self.rejected),
            "closed_by_hand": {z: int(lv) for z, lv in self._closed_by_hand.items()},
        }

    def from_snapshot(self, data: dict[str, Any]) -> None:
        """Restore in place from to_snapshot(). ValueError on a snapshot that does not fit, book unchanged."""
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise ValueError(f"alert snapshot version {version!r} is not {SNAPSHOT_VERSION}")
        try:
            alerts = msgspec.convert(data["alerts"], list[Alert])
            resolved_ids = [str(i) for i in data["resolved"]]
            rejected = Counter({str(k): int(v) for k, v in data.get("rejected", {}).items()})
            closed = {str(z): Level(int(v)) for z, v in data.get("closed_by_hand", {}).items()}
        except (msgspec.ValidationError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"alert snapshot does not fit: {e}") from e
        by_id: dict[str, Alert] = {}
        open_by_zone: dict[str, str] = {}
        for a in alerts:
            if a.id in by_id:
                raise ValueError(f"alert snapshot: alert id {a.id!r} twice")
            by_id[a.id] = a
            if a.open:
                if a.zone in open_by_zone:
                    raise ValueError(f"alert snapshot: two open alerts for zone {a.zone!r}")
                open_by_zone[a.zone] = a.id
        self._alerts, self._open, self._resolved, self.rejected = by_id, open_by_zone, deque(), rejected
        self._closed_by_hand = closed
        retired: set[str] = set()
        for i in resolved_ids:
            if i in by_id and not by_id[i].open and i not in retired:
                retired.add(i)
                self._retire(i)
        # Resolved alerts the list missed still count against the bound, oldest first.
        rest = sorted((a for a in alerts if not a.open and a.id not in retired), key=lambda a: a.updated_at)
        for a in rest:
            self._retire(a.id)
        # An open alert for a zone the site no longer has would never resolve: close it, saying why.
        for zone, i in list(self._open.items()):
            if zone not in self.site.zones:
                a = by_id[i]
                gone = Detection(
                    zone=zone,
                    ts=a.updated_at,
                    level=Level.NORMAL,
                    cause=a.cause,
                    evidence=a.evidence,
                    message=f"zone {zone!r} no longer in the site file",
                )
                self._resolve(a, gone)
