"""The alert manager: detections in; alerts, notifications and an audit trail out. Implements AlertActions.

One pass per tick, built from small stages (DESIGN.md §6, after Alertmanager):

    lifecycle (AlertBook) → annotate (measures, diversion, uncertainty) → group (incidents of adjacent
    segments) → inhibit → silence → dedup (a stated reason per decision) → route (roster, escalation step)
    → submit to the dispatcher (off this path) → journal (SQLite) and audit

A notification is about a *key*: the alert id, or the incident id when adjacent riverside segments alert
together, so an officer gets one message per situation. Escalation and acknowledgement follow the key:
acknowledging any member of an incident acknowledges the incident. Every person action is audited and the
state needed to resume after a restart (open alerts, what was sent, escalation timers, incidents, silences,
events, emergency modes) lives in the journal, so a restarted service does not notify again what was sent.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from alerts import compose
from alerts.actions import AlertFilter
from alerts.cap import cap_xml
from alerts.dedup import Candidate, Sent, judge
from alerts.encode import alert_json
from alerts.escalation import Escalator
from alerts.grouping import group_incidents, incident_of
from alerts.inhibit import DEFAULT_RULES, InhibitRule, inhibitions, uncertainty
from alerts.journal import Journal
from alerts.lifecycle import AlertBook
from alerts.measures import Measures, diversion_targets
from alerts.metrics import response_metrics
from alerts.model import (
    AuditEntry,
    EmergencyMode,
    Incident,
    Notification,
    NotificationKind,
    PlannedEvent,
    Recipient,
    Silence,
)
from alerts.notify.base import redact
from alerts.routing import Router
from alerts.silence import expired, silenced_by, validate_matchers
from detect.overrides import Overrides
from domain.clock import Clock
from domain.levels import Level
from domain.site import Site
from domain.values import Alert, AlertChange, Detection, ZoneState

log = logging.getLogger("crowdflow.alerts")

STATE_NAME = "manager"  # journal state blob name


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class AlertManager:
    def __init__(
        self,
        site: Site,
        *,
        journal: Journal,
        router: Router,
        escalator: Escalator,
        measures: Measures,
        overrides: Overrides,
        clock: Clock,
        submit: Callable[[Notification], bool],
        on_change: Callable[[list[Alert]], None] | None = None,
        public_url: str = "",
        inhibit_rules: Sequence[InhibitRule] = DEFAULT_RULES,
        id_factory: Callable[[], str] | None = None,
        sender: str = "crowdflow@lujiazui.example",
    ) -> None:
        self.site = site
        self.journal = journal
        self.router = router
        self.escalator = escalator
        self.measures = measures
        self.overrides = overrides
        self.clock = clock
        self.submit = submit
        self.on_change = on_change
        self.public_url = public_url.rstrip("/")
        self.inhibit_rules = tuple(inhibit_rules)
        self.sender = sender
        self.book = AlertBook(site, id_factory=id_factory)
        self.states: dict[str, ZoneState] = {}
        self.silence_by_id: dict[str, Silence] = {}
        self.event_by_id: dict[str, PlannedEvent] = {}
        self.modes: dict[str, EmergencyMode] = {}
        self.incidents: dict[str, Incident] = {}
        self.sent: dict[str, Sent] = {}  # key -> what was last notified about it
        self.told: dict[str, list[str]] = {}  # key -> person ids told so far (all of them hear the all-clear)
        self.step: dict[str, int] = {}  # key -> escalation step reached
        self.key_of: dict[str, str] = {}  # open alert id -> its notification key at the last pass
        self._last_state: dict[str, Any] | None = None  # the manager state last written to the journal
        self._saved: dict[str, AlertChange] = {}  # alert id -> last history entry written to the journal
        self.notifications_sent = 0
        self.dropped = 0  # notifications the dispatcher queue refused (counted, logged)

    # ================================================================================================
    # restart
    # ================================================================================================
    def restore(self) -> int:
        """Load open alerts, silences, events, modes and the notification state from the journal.
        Returns the number of open alerts resumed."""
        open_alerts = self.journal.load_open_alerts()
        self.book.from_snapshot({"version": 1, "alerts": [msgspec.to_builtins(a) for a in open_alerts], "resolved": []})
        for a in open_alerts:
            held = self.book.get(a.id)
            if held is not None and not held.open:  # closed on load, e.g. its zone left the site file
                self.journal.save_alert(held, held.history[-1:])
        for a in self.book.open_alerts():
            if a.history:
                self._saved[a.id] = a.history[-1]
        self.silence_by_id = {s.id: s for s in self.journal.silences()}
        self.event_by_id = {e.id: e for e in self.journal.events()}
        self.modes = {m.scope: m for m in self.journal.emergency()}
        self._push_overrides()
        state = self.journal.load_state(STATE_NAME) or {}
        try:
            self.escalator.from_state(state.get("escalator", {}))
            self.incidents = {i: msgspec.convert(v, Incident) for i, v in state.get("incidents", {}).items()}
            self.sent = {k: msgspec.convert(v, Sent) for k, v in state.get("sent", {}).items()}
            self.told = {k: list(v) for k, v in state.get("told", {}).items()}
            self.step = {k: int(v) for k, v in state.get("step", {}).items()}
            self.key_of = {str(k): str(v) for k, v in state.get("key_of", {}).items()}
        except (msgspec.ValidationError, TypeError, ValueError, AttributeError) as e:
            # Better to notify once more than to lose open alerts: start the notification state afresh.
            log.warning("alert manager state unreadable (%s): open alerts kept, notification state reset", e)
            self.sent, self.told, self.step, self.key_of, self.incidents = {}, {}, {}, {}, {}
            self.escalator.from_state({})  # timers for keys nobody remembers would escalate forever
        return len(open_alerts)

    def _save_state(self) -> None:
        state = {
            "escalator": self.escalator.to_state(),
            "incidents": {i: msgspec.to_builtins(v) for i, v in self.incidents.items()},
            "sent": {k: msgspec.to_builtins(v) for k, v in self.sent.items()},
            "told": self.told,
            "step": self.step,
            "key_of": self.key_of,
        }
        if state != self._last_state:  # most ticks change nothing: no write then
            self.journal.save_state(STATE_NAME, state)
            self._last_state = copy.deepcopy(state)

    # ================================================================================================
    # detections in
    # ================================================================================================
    def observe(self, detections: Iterable[Detection], states: Sequence[ZoneState], now: float) -> list[Alert]:
        """One tick's detections and zone states. Returns the alerts to push to walls and MQTT."""
        for s in states:
            self.states[s.zone] = s
        changed = {a.id: a for a in self.book.observe(detections)}
        self._pass(now, changed)
        return list(changed.values())

    def tick(self, now: float) -> list[Alert]:
        """Time-driven work: silences and events running out, escalation, acknowledgements running out."""
        changed: dict[str, Alert] = {}
        for s in expired(list(self.silence_by_id.values()), now):
            self._end(s, "system", s.ends_at, now)
        for e in [e for e in self.event_by_id.values() if e.ended_at is None and now >= e.ends_at]:
            self._end(e, "system", e.ends_at, now)
        for key in self.escalator.ack_expired(now, self._emergency_of):
            members = self._members(key)
            for a in members:
                ttl_note = "acknowledged, but still open when the acknowledgement ran out"
                if self.book.reraise(a.id, now, ttl_note) is not None:
                    changed[a.id] = a
            if members:
                level = max(a.level for a in members)
                self.escalator.reopen(key, level, now)
                self.step[key] = 0
                was = self.sent.get(key)
                if was is not None:
                    self.sent[key] = msgspec.structs.replace(was, acknowledged=False, at=now)
                self._send(key, members, "reraised", 0, now, "the acknowledgement ran out while the alert is open")
        for due in self.escalator.due(now, self._emergency_of):
            members = self._members(due.key)
            if not members:
                self.escalator.stop(due.key)
                continue
            self.step[due.key] = max(self.step.get(due.key, 0), due.step)
            why = (
                f"nobody acknowledged {due.level.label} in time: step {due.step} of the escalation policy"
                if due.kind == "escalated"
                else f"still unacknowledged at {due.level.label}: reminder {due.repeat}"
            )
            self._send(due.key, members, due.kind, due.step, now, why)
        self._pass(now, changed)
        return list(changed.values())

    # ================================================================================================
    # the pass: annotate, group, inhibit, silence, dedup, notify, persist
    # ================================================================================================
    def _pass(self, now: float, changed: dict[str, Alert]) -> None:
        open_alerts = self.book.open_alerts()
        for a in open_alerts:
            self._annotate(a, now, changed)
        self.incidents = group_incidents(open_alerts, self.site, self.incidents, now)
        inc = incident_of(self.incidents)
        inhibited = inhibitions(open_alerts, self.site, self.inhibit_rules)
        active = [s for s in self.silence_by_id.values() if s.active(now)]
        for a in open_alerts:
            new_inc = inc.get(a.id)
            if new_inc != a.incident:
                a.incident = new_inc
                changed[a.id] = a
            src = inhibited.get(a.id)
            if src != a.inhibited_by:
                a.inhibited_by = src
                note = f"follows from {src}: shown, not notified" if src else "no longer covered by a worse alert"
                self.book.annotate(a, "inhibited" if src else "uninhibited", note, now)
                changed[a.id] = a
            sil = silenced_by(a, active, self.site, now)
            if sil != a.silenced_by:
                a.silenced_by = sil
                note = f"silence {sil}: {self.silence_by_id[sil].reason}" if sil else "silence over"
                self.book.annotate(a, "silenced" if sil else "unsilenced", note, now)
                changed[a.id] = a
        self._decide_and_send(now, open_alerts, changed)
        self._persist(changed.values())
        self._save_state()

    def _annotate(self, a: Alert, now: float, changed: dict[str, Alert]) -> None:
        zone = self.site.zones.get(a.zone)
        if zone is not None:
            if a.id in changed or not a.measures:  # the checklist follows the level and cause only
                a.measures = self.measures.checklist(zone, a.level, a.cause)
            a.diversion = diversion_targets(self.site, a.zone, self.states) if a.level >= Level.III else []
        unsure, why = uncertainty(a)
        if unsure != a.uncertain:
            a.uncertain, a.uncertain_reason = unsure, why
            self.book.annotate(a, "uncertain" if unsure else "certain", why or "sensors healthy again", now)
            changed[a.id] = a

    def _members(self, key: str) -> list[Alert]:
        inc = self.incidents.get(key)
        if inc is not None:
            out = [self.book.get(i) for i in inc.alert_ids]
            return [a for a in out if a is not None and a.open]
        a = self.book.get(key)
        return [a] if a is not None and a.open else []

    def _decide_and_send(self, now: float, open_alerts: list[Alert], changed: dict[str, Alert]) -> None:
        by_key: dict[str, list[Alert]] = {}
        for a in open_alerts:
            by_key.setdefault(a.incident or a.id, []).append(a)
        # Keys renamed by grouping inherit what was sent under the old key, so joining or leaving an
        # incident is a "member added" or nothing, never a fresh "new alert" to the same people.
        for key, members in by_key.items():
            if key in self.sent:
                continue
            for a in members:
                old = self.key_of.get(a.id)
                if old and old != key and old in self.sent:
                    prev = self.sent[old]
                    if key not in self.sent or prev.level > self.sent[key].level:
                        self.sent[key] = prev
                        self.told[key] = list(self.told.get(old, []))
                        self.step[key] = self.step.get(old, 0)
                        timer = self.escalator.get(old)
                        if timer is not None:
                            self.escalator.adopt(key, timer)  # the old key is stopped below
        new_key_of = {a.id: k for k, ms in by_key.items() for a in ms}
        for key, members in by_key.items():
            members.sort(key=lambda a: (self.site.zones[a.zone].segment or 0) if a.zone in self.site.zones else 0)
            cand = Candidate(
                key=key,
                level=max(a.level for a in members),
                members=tuple(a.zone for a in members),
                open=True,
                acknowledged=all(a.state == "acknowledged" for a in members),
                silenced=all(a.silenced_by is not None for a in members),
                inhibited=all(a.inhibited_by is not None for a in members),
            )
            v = judge(self.sent.get(key), cand, now)
            if not v.notify or v.kind is None:
                if any(a.id in changed for a in members):
                    self._audit(now, "system", "notify.skipped", key, {"reason": v.reason})
                if cand.silenced or cand.inhibited:
                    if self.escalator_tracks(key):
                        self.escalator.stop(key)  # a silenced or covered situation does not wake the next step
                elif key in self.sent and not self.escalator_tracks(key):
                    # Told before, silence or inhibition over (or a key that lost its timer): the clock runs again.
                    self.escalator.start(key, members[0].zone, cand.level, now)
                    self.step[key] = 0
                    if cand.acknowledged:
                        self.escalator.acknowledged(key, now)
                elif self.escalator_tracks(key):
                    # Nothing new was said: an acknowledgement given stays in force until something is pushed.
                    self._follow(key, cand, reopen=False)
                continue
            step = self.step.get(key, 0)
            self._send(key, members, v.kind, step, now, v.reason, v.sent)
            if v.kind == "raised" or not self.escalator_tracks(key):
                self.escalator.start(key, members[0].zone, cand.level, now)
                self.step[key] = 0
            else:
                self._follow(key, cand)
        # Keys with no open member any more: the all-clear, to everyone who was told.
        for key in [k for k in self.sent if k not in by_key]:
            prev = self.sent[key]
            gone = [a for a in (self.book.get(i) for i, k in self.key_of.items() if k == key) if a is not None]
            moved = any(new_key_of.get(a.id) for a in gone)
            if not moved:
                cand = Candidate(key=key, level=Level.NORMAL, members=prev.members, open=False,
                                 acknowledged=prev.acknowledged, silenced=False, inhibited=False)  # fmt: skip
                v = judge(prev, cand, now)
                if v.notify and gone:
                    self._send(key, gone, "resolved", self.step.get(key, 0), now, v.reason, v.sent)
            self.escalator.stop(key)
            self.sent.pop(key, None)
            self.told.pop(key, None)
            self.step.pop(key, None)
        self.key_of = new_key_of

    def _follow(self, key: str, cand: Candidate, *, reopen: bool = True) -> None:
        """Keep the key's timer in step with its level and acknowledgement."""
        now = self.clock.now()
        timer = self.escalator.get(key)
        if timer is None:
            return
        if timer.level != cand.level:
            self.escalator.level_changed(key, cand.level, now)
        if reopen and timer.acked_at is not None and not cand.acknowledged:
            # A worse level or a new segment is not covered by the earlier acknowledgement: escalate again.
            self.escalator.reopen(key, cand.level, now)
            self.step[key] = 0
        elif timer.acked_at is None and cand.acknowledged:
            self.escalator.acknowledged(key, now)

    def escalator_tracks(self, key: str) -> bool:
        return key in self.escalator.tracked()

    def _recipients(self, zones: Sequence[str], step: int, now: float) -> tuple[Recipient, ...]:
        seen: dict[str, Recipient] = {}
        for z in zones:
            for s in range(step + 1):  # whoever was told before hears about it again, and the new step
                for r in self.router.recipients(z, s, now):
                    seen.setdefault(r.person, r)
        return tuple(seen.values())

    def _send(
        self,
        key: str,
        members: list[Alert],
        kind: NotificationKind,
        step: int,
        now: float,
        reason: str,
        sent: Sent | None = None,
    ) -> None:
        zones = tuple(a.zone for a in members)
        level = max(a.level for a in members) if kind != "resolved" else Level.NORMAL
        if kind == "resolved":
            # The all-clear goes to the people who were told, whoever is on shift now.
            told = (self.router.recipient(p) for p in self.told.get(key, []))
            recipients = tuple(r for r in told if r is not None) or self._recipients(zones, step, now)
        else:
            recipients = self._recipients(zones, step, now)
        first = next((a for a in members if a.state != "acknowledged"), members[0])  # what still needs an answer
        url = f"{self.public_url}/officer#alert={first.id}" if self.public_url else ""
        n = Notification(
            id=_new_id("n"),
            key=key,
            alert_ids=tuple(a.id for a in members),
            zones=zones,
            kind=kind,
            level=level,
            step=step,
            title=compose.title(
                self.site, kind, max(a.peak_level for a in members) if kind == "resolved" else level, zones
            ),
            body=compose.body(self.site, kind, members, reason=reason, step=step, url=url),
            reason=reason,
            created_at=now,
            recipients=recipients,
            url=url,
        )
        self.journal.record_notification(n)
        if self.submit(n):
            self.notifications_sent += 1
        else:
            self.dropped += 1
            log.error("notification %s for %s dropped: delivery queue full", n.id, key)
        told_list = self.told.setdefault(key, [])
        told_list += [r.person for r in recipients if r.person not in told_list]
        if sent is not None:
            self.sent[key] = sent  # dedup's own record of what this push covers
        else:  # escalations, reminders, re-raises: same level and members as before, pushed again now
            prev = self.sent.get(key)
            level_sent = max(prev.level, level) if prev is not None else level
            self.sent[key] = Sent(kind=kind, level=level_sent, members=zones, at=now, acknowledged=False)
        self._audit(
            now, "system", f"notify.{kind}", key, {"reason": reason, "to": ",".join(r.person for r in recipients)}
        )

    def _persist(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            last = self._saved.get(a.id)
            hist = a.history
            i = len(hist)
            if last is not None:
                while i > 0 and hist[i - 1] is not last:
                    i -= 1
            # Not found (capped away, or objects rebuilt): write it all; the journal ignores changes it has.
            new = hist[i:] if last is not None and i > 0 else hist
            self.journal.save_alert(a, new)
            if hist:
                self._saved[a.id] = hist[-1]
            if not a.open:
                self._saved.pop(a.id, None)

    def _audit(self, now: float, actor: str, action: str, subject: str, detail: Mapping[str, str]) -> None:
        self.journal.audit(AuditEntry(ts=now, actor=actor, action=action, subject=subject, detail=dict(detail)))

    # ================================================================================================
    # emergency and events feed detection
    # ================================================================================================
    def _emergency_of(self, zone_id: str) -> bool:
        return self.overrides.in_emergency(zone_id)

    def _push_overrides(self) -> None:
        # Every event not ended goes to detection, which checks each window against event time itself: the
        # clock here may be a simulator's that has not started yet.
        good = []
        for e in self.event_by_id.values():
            if e.ended_at is not None:
                continue
            try:
                self.overrides.check_event(e)
            except ValueError as err:  # e.g. a zone dropped from the site since it was stored
                log.warning("planned event %s (%s) not applied: %s", e.id, e.name, err)
                continue
            good.append(e)
        self.overrides.set_events(good)
        self.overrides.set_emergency(
            [m for m in self.modes.values() if m.scope in self.site.grids or m.scope == "district"]
        )

    # ================================================================================================
    # AlertActions: what people do
    # ================================================================================================
    def _json(self, a: Alert) -> dict[str, Any]:
        return alert_json(a, self.site)

    def _after_action(self, now: float, changed: dict[str, Alert]) -> None:
        self._pass(now, changed)
        if changed and self.on_change is not None:
            self.on_change(list(changed.values()))

    def list_alerts(self, f: AlertFilter) -> list[dict[str, Any]]:
        if f.state == "open":
            alerts = [a for a in self.book.open_alerts() if _matches(a, f)]
        else:
            alerts = self.journal.query_alerts(
                state=f.state, zone=f.zone, grid=f.grid, micro_grid=f.micro_grid, cause=f.cause,
                min_level=f.min_level, since=f.since, until=f.until, limit=f.limit,
            )  # fmt: skip
            # Open alerts carry live annotations (diversion) the journal saw at their last change only.
            alerts = [self.book.get(a.id) or a for a in alerts]
        return [self._json(a) for a in alerts[: f.limit]]

    def _alert(self, alert_id: str) -> Alert | None:
        return self.book.get(alert_id) or self.journal.get_alert(alert_id)

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        a = self._alert(alert_id)
        return None if a is None else self._json(a)

    def acknowledge(self, alert_id: str, by: str, comment: str) -> dict[str, Any]:
        now = self.clock.now()
        a = self.book.acknowledge(alert_id, by, comment, now)
        changed = {a.id: a}
        key = self.key_of.get(a.id, a.id)
        for other in self._members(key):
            if other.id != a.id and other.state != "acknowledged":
                self.book.acknowledge(other.id, by, f"as part of incident {key}: {comment}".rstrip(": "), now)
                changed[other.id] = other
        self.escalator.acknowledged(key, now)
        s = self.sent.get(key)
        if s is not None:
            self.sent[key] = msgspec.structs.replace(s, acknowledged=True)
        self._audit(now, by, "alert.acknowledged", alert_id, {"comment": comment, "key": key})
        self._after_action(now, changed)
        return self._json(a)

    def comment(self, alert_id: str, by: str, text: str) -> dict[str, Any]:
        now = self.clock.now()
        a = self.book.get(alert_id)
        if a is None:
            stored = self.journal.get_alert(alert_id)
            if stored is None:
                raise KeyError(f"no alert {alert_id!r}")
            a = stored
            if not text.strip():
                raise ValueError("a comment needs text")
            change = AlertChange(ts=now, state=a.state, level=a.level, note=text, by=by, action="commented")
            a.history.append(change)
            self.journal.save_alert(a, [change])
        else:
            self.book.comment(alert_id, by, text, now)
            self._after_action(now, {a.id: a})
        self._audit(now, by, "alert.commented", alert_id, {"text": text})
        return self._json(a)

    def resolve(self, alert_id: str, by: str, comment: str) -> dict[str, Any]:
        now = self.clock.now()
        a = self.book.resolve(alert_id, by, comment, now)
        self._audit(now, by, "alert.resolved", alert_id, {"comment": comment})
        self._after_action(now, {a.id: a})
        return self._json(a)

    def cap(self, alert_id: str) -> bytes:
        a = self._alert(alert_id)
        if a is None:
            raise KeyError(f"no alert {alert_id!r}")
        return cap_xml(a, self.site, sender=self.sender, now=self.clock.now())

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        if self._alert(alert_id) is None:
            raise KeyError(f"no alert {alert_id!r}")
        out = []
        for n in self.journal.notifications(alert_id=alert_id):
            d = msgspec.to_builtins(n)
            for r in d["recipients"]:  # a channel URL can carry a token (DingTalk) or be the secret (ntfy topic)
                r["channels"] = [redact(c) for c in r["channels"]]
            d["attempts"] = [msgspec.to_builtins(x) for x in self.journal.attempts(notification_id=n.id)]
            out.append(d)
        return out

    # --- silences ---
    def _silences_list(self, active_only: bool) -> list[Silence]:
        now = self.clock.now()
        return [s for s in self.silence_by_id.values() if not active_only or s.active(now)]

    def silences(self, active_only: bool) -> list[dict[str, Any]]:
        return [msgspec.to_builtins(s) for s in self._silences_list(active_only)]

    def add_silence(
        self,
        by: str,
        matchers: dict[str, str],
        duration_s: float,
        reason: str,
        starts_at: float | None = None,
        max_level: Level = Level.I,
    ) -> dict[str, Any]:
        now = self.clock.now()
        clean = validate_matchers(matchers, self.site)
        if not reason.strip():
            raise ValueError("a silence needs a reason (who asked for it and why), for the audit trail")
        if not 0 < duration_s <= 86400:
            raise ValueError(f"duration must be between 1 s and 24 h, got {duration_s:g} s")
        start = now if starts_at is None else starts_at
        s = Silence(
            id=_new_id("sil"), matchers=clean, starts_at=start, ends_at=start + duration_s, reason=reason,
            created_by=by, created_at=now, max_level=max_level,
        )  # fmt: skip
        self.silence_by_id[s.id] = s
        self.journal.save_silence(s)
        self._audit(now, by, "silence.created", s.id, {"reason": reason, "matchers": repr(clean)})
        self._after_action(now, {})
        return msgspec.to_builtins(s)  # type: ignore[no-any-return]

    def end_silence(self, silence_id: str, by: str) -> dict[str, Any]:
        return self._end_by_hand(self.silence_by_id.get(silence_id), "silence", silence_id, by)

    # --- planned events ---
    def events(self, active_only: bool) -> list[dict[str, Any]]:
        now = self.clock.now()
        out = sorted(self.event_by_id.values(), key=lambda e: e.starts_at)
        return [msgspec.to_builtins(e) for e in out if not active_only or e.active(now)]

    def add_event(
        self,
        by: str,
        name: str,
        zones: list[str],
        starts_at: float,
        ends_at: float,
        flow_factor: float,
        reason: str,
        share: tuple[float, float, float, float] | None = None,
        density: tuple[float, float, float, float] | None = None,
    ) -> dict[str, Any]:
        now = self.clock.now()
        if not reason.strip() or not name.strip():
            raise ValueError("an event needs a name and a reason")
        e = PlannedEvent(
            id=_new_id("evt"), name=name, zones=tuple(zones), starts_at=starts_at, ends_at=ends_at,
            flow_factor=flow_factor, reason=reason, created_by=by, created_at=now, share=share, density=density,
        )  # fmt: skip
        self.overrides.check_event(e)  # zones, window, factor and thresholds, with messages saying what to fix
        self.event_by_id[e.id] = e
        self.journal.save_event(e)
        self._push_overrides()
        self._audit(now, by, "event.created", e.id, {"name": name, "zones": ",".join(zones), "reason": reason})
        return msgspec.to_builtins(e)  # type: ignore[no-any-return]

    def end_event(self, event_id: str, by: str) -> dict[str, Any]:
        return self._end_by_hand(self.event_by_id.get(event_id), "event", event_id, by)

    # --- silences and events end the same way: by hand, or by time ("system") ---
    def _end_by_hand(self, item: Silence | PlannedEvent | None, kind: str, item_id: str, by: str) -> dict[str, Any]:
        if item is None:
            raise KeyError(f"no {kind} {item_id!r}")
        if item.ended_at is not None:
            raise ValueError(f"{kind} {item_id!r} already ended")
        now = self.clock.now()
        self._end(item, by, now, now)
        self._after_action(now, {})
        return msgspec.to_builtins(item)  # type: ignore[no-any-return]

    def _end(self, item: Silence | PlannedEvent, by: str, ended_at: float, now: float) -> None:
        item.ended_at, item.ended_by = ended_at, by
        if isinstance(item, Silence):
            self.journal.save_silence(item)
            kind = "silence"
        else:
            self.journal.save_event(item)
            self._push_overrides()
            kind = "event"
        self._audit(now, by, f"{kind}.{'expired' if by == 'system' else 'ended'}", item.id, {})

    # --- emergency ---
    def emergency(self) -> list[dict[str, Any]]:
        return [msgspec.to_builtins(m) for m in self.modes.values()]

    def set_emergency(self, by: str, scope: str, on: bool, reason: str) -> list[dict[str, Any]]:
        now = self.clock.now()
        if scope != "district" and scope not in self.site.grids:
            raise ValueError(f"scope must be 'district' or a grid id ({', '.join(sorted(self.site.grids))})")
        if not reason.strip():
            raise ValueError("switching emergency mode needs a reason, for the audit trail")
        if on:
            if scope in self.modes:
                raise ValueError(f"{scope} is already in emergency mode since {self.modes[scope].since:.0f}")
            self.modes[scope] = EmergencyMode(scope=scope, since=now, by=by, reason=reason)
        else:
            if scope not in self.modes:
                raise ValueError(f"{scope} is not in emergency mode")
            del self.modes[scope]
        self.journal.save_emergency(list(self.modes.values()))
        self._push_overrides()
        self._audit(now, by, "emergency.on" if on else "emergency.off", scope, {"reason": reason})
        return self.emergency()  # the API pushes the new mode to the walls

    # --- evaluation ---
    def response_metrics(self, since: float | None, until: float | None) -> dict[str, Any]:
        alerts = self.journal.query_alerts(state="all", since=since, until=until, limit=100_000)
        return response_metrics(alerts, now=self.clock.now())

    def audit(self, subject: str | None, limit: int) -> list[dict[str, Any]]:
        return [msgspec.to_builtins(e) for e in self.journal.audit_log(subject=subject, limit=limit)]

    def status(self) -> dict[str, Any]:
        return {
            "open": len(self.book.open_alerts()),
            "incidents": len(self.incidents),
            "notifications_sent": self.notifications_sent,
            "notifications_dropped": self.dropped,
            "silences_active": len(self._silences_list(True)),
            "emergency": sorted(self.modes),
            "rejected": dict(self.book.rejected),
        }


def _matches(a: Alert, f: AlertFilter) -> bool:
    return (
        (f.zone is None or a.zone == f.zone)
        and (f.grid is None or a.grid == f.grid)
        and (f.micro_grid is None or a.micro_grid == f.micro_grid)
        and (f.cause is None or a.cause == f.cause)
        and a.level >= f.min_level
        and (f.since is None or a.opened_at >= f.since)
        and (f.until is None or a.opened_at < f.until)
    )
