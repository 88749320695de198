"""Values shared by the alerting stages (route, escalate, dedup, notify, journal) and the API.

The alert itself (`domain.values.Alert`) is what the wall shows; a Notification is one message about one
alert or incident to a set of people; a DeliveryAttempt is one try of one channel for one person.
Times are float epoch seconds; the clock is always injected.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from domain.levels import Level

Role = Literal["officer", "grid_leader", "command", "operator"]
"""officer: acts on the zones of their duties; grid_leader: on their grids; command/operator: on all."""

NotificationKind = Literal[
    "raised",  # a new alert or incident
    "level_up",
    "level_down",
    "member_added",  # another adjacent segment joined the incident
    "escalated",  # nobody acknowledged in time: the next step of the policy is told
    "reminder",  # the last step is told again
    "reraised",  # acknowledged, but still open when the acknowledgement ran out
    "resolved",
]

EscalationTarget = Literal["responsible", "grid_leader", "command"]


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    person: str  # roster id
    name: str
    role: Role
    channels: tuple[str, ...]  # Apprise URLs, or "webpush:<subscription id>"


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One message about an alert (or an incident of several) for its recipients."""

    id: str
    key: str  # what dedup and escalation track: the alert id, or the incident id for a grouped incident
    alert_ids: tuple[str, ...]
    zones: tuple[str, ...]  # first is the worst
    kind: NotificationKind
    level: Level
    step: int  # escalation step that chose the recipients: 0 responsible, 1 grid leader, 2 command, ...
    title: str  # short, for a phone's lock screen: "I red · Riverside S03 (+S04)"
    body: str  # what, where, numbers, what to do, how to acknowledge
    reason: str  # why this was sent (dedup's stated reason)
    created_at: float
    recipients: tuple[Recipient, ...]
    url: str = ""  # where to acknowledge (officer page), when the service knows its public address


class DeliveryAttempt(msgspec.Struct, frozen=True, kw_only=True):
    notification_id: str
    person: str
    channel: str  # redacted: scheme and host only, never a token
    attempt: int  # 1 for the first try
    at: float
    ok: bool
    retryable: bool = False  # for a failure: will be tried again (after backoff) unless attempts ran out
    error: str = ""
    latency_ms: float = 0.0


class DedupDecision(msgspec.Struct, frozen=True, kw_only=True):
    notify: bool
    reason: str  # always stated, also when nothing is sent ("same level II orange as sent 40 s ago")


class Silence(msgspec.Struct, kw_only=True):
    """Matching alerts are not notified while active. They stay on the wall, marked silenced."""

    id: str
    matchers: dict[str, str]  # any of zone, grid, micro_grid, cause, kind (zone kind); all must match
    starts_at: float
    ends_at: float
    reason: str
    created_by: str
    created_at: float
    ended_at: float | None = None  # ended by hand before ends_at
    ended_by: str = ""
    max_level: Level = Level.I  # silence only alerts at or below this level; a worse one gets through

    def active(self, now: float) -> bool:
        return self.ended_at is None and self.starts_at <= now < self.ends_at


class PlannedEvent(msgspec.Struct, kw_only=True):
    """A planned event (fireworks, a marathon) raising zones' expected flow and setting their thresholds."""

    id: str
    name: str
    zones: tuple[str, ...]
    starts_at: float
    ends_at: float
    flow_factor: float  # expected inflow x this during the window (>= 1 for a crowd that is planned)
    reason: str
    created_by: str
    created_at: float
    share: tuple[float, float, float, float] | None = None  # IV..I occupancy/capacity thresholds in the window
    density: tuple[float, float, float, float] | None = None  # IV..I people/m2 thresholds in the window
    ended_at: float | None = None
    ended_by: str = ""

    def active(self, now: float) -> bool:
        return self.ended_at is None and self.starts_at <= now < self.ends_at


class EmergencyMode(msgspec.Struct, kw_only=True):
    """平急转换: the district ("district") or one grid switched from normal service to emergency response."""

    scope: str  # "district" or a grid id
    since: float
    by: str
    reason: str


class Incident(msgspec.Struct, kw_only=True):
    """Adjacent riverside segments alerting together: one notification stream for all of them."""

    id: str
    alert_ids: list[str]
    zones: list[str]  # in river order
    level: Level  # the worst member's
    opened_at: float
    updated_at: float
    resolved_at: float | None = None


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """Every action by a person or by the system on alerts, silences, events and modes."""

    ts: float
    actor: str  # person id, or "system"
    action: str  # e.g. "alert.acknowledged", "silence.created", "emergency.on"
    subject: str  # alert / silence / event id, or the emergency scope
    detail: dict[str, str] = {}
