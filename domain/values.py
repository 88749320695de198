"""Values that flow between the components: Reading (ingest → detect), ZoneState and Detection
(detect → alerts, store, dashboard), Alert (alerts → dashboard, MQTT, store).

Timestamps are float seconds since the epoch (UTC), event time unless named otherwise.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from domain.levels import Level

ReadingKind = Literal["flow", "occupancy", "density", "status"]


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    """One sensor interval, validated and normalised by ingest/.

    flow: `inflow`/`outflow` are people entering/leaving the zone during the interval ending at `ts`
          (counter direction and running totals already resolved; a counter reset yields no fake flow).
    occupancy: `count` people in the sensor's area at `ts`.
    density: `density` people/m² at `ts`.
    status: `status` is "online", "offline" or "fault", with `detail`.
    """

    sensor: str
    zone: str
    kind: ReadingKind
    ts: float
    seq: int
    interval_s: float = 0.0
    inflow: int = 0
    outflow: int = 0
    count: int | None = None
    density: float | None = None
    status: str | None = None
    detail: str = ""


class ZoneState(msgspec.Struct, kw_only=True):
    """A zone's estimated state at event time `ts`."""

    zone: str
    ts: float
    occupancy: float
    capacity: int
    share: float  # occupancy / capacity
    density: float  # people / m²
    inflow_per_min: float
    outflow_per_min: float
    arrivals_today: int
    level: Level = Level.NORMAL
    healthy: bool = True  # False: sensors missing or faulty, show as unknown rather than calm
    forecast: str = ""  # e.g. "reaches II orange in about 12 min", for the wall
    eta_red_min: float | None = None  # minutes until I red is forecast, when within the horizon
    # The learned normal inflow for the zone now (the surge detector's learned offset from the capacity
    # profile, times any planned event's flow factor); given for unhealthy zones too: it is not a measurement.
    expected_inflow_per_min: float | None = None
    # The occupancy forecast ahead: (horizon_min, occupancy, low90, high90); empty without enough history or
    # while the zone is unhealthy (a forecast from before the data went bad is stale).
    outlook: list[tuple[int, float, float, float]] = []
    # Sensor id -> short text of its problem now ("offline: no data for 6 min"), the problems that make the
    # zone unhealthy; a zone-level problem (drifting counters) is listed under each of the zone's counters.
    sensor_issues: dict[str, str] = {}


class DistrictState(msgspec.Struct, kw_only=True):
    ts: float
    people_now: float
    arrivals_today: int
    expected_arrivals_so_far: float  # from the capacity profile for this day type
    peak_day_visits: int
    zones_by_level: dict[str, int]


Cause = Literal["capacity", "density", "surge", "forecast", "stall", "counterflow", "sensor"]


class Detection(msgspec.Struct, frozen=True, kw_only=True):
    """What detect/ concluded about a zone at `ts`: a graded level with its cause and evidence."""

    zone: str
    ts: float
    level: Level
    cause: Cause
    score: float = 0.0
    evidence: dict[str, float] = {}
    message: str = ""
    # Every signal active for the zone at `ts`, cause -> level (int), the reported one included: lets alerts/
    # mark an alert uncertain when a sensor-health signal is active beside a worse one.
    signals: dict[str, int] = {}


AlertState = Literal["raised", "escalated", "acknowledged", "resolved"]


# What happened to an alert, for its history and the audit trail.
AlertAction = Literal[
    "raised",  # opened
    "level_up",  # level rose on the same alert (state becomes "escalated")
    "level_down",
    "acknowledged",
    "commented",
    "reraised",  # acknowledged, but still open when the acknowledgement's time ran out
    "resolved",  # the zone recovered (by="") or a person closed it (by=person id)
    "uncertain",  # a sensor-health signal is active in the zone: the numbers may be wrong
    "certain",
    "inhibited",  # covered by a worse alert it follows from; listed, not notified
    "uninhibited",
    "silenced",
    "unsilenced",
]


class AlertChange(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    state: AlertState
    level: Level
    note: str = ""
    by: str = ""
    action: AlertAction | Literal[""] = ""  # "" in snapshots written before actions were recorded


class Diversion(msgspec.Struct, frozen=True, kw_only=True):
    """A neighbouring zone with room to take people diverted from a crowded one (computed live)."""

    zone: str
    name: str
    spare: int  # people it can take before reaching its II orange share
    share: float  # its occupancy / capacity now


class Alert(msgspec.Struct, kw_only=True):
    id: str
    zone: str
    level: Level
    peak_level: Level
    cause: Cause
    state: AlertState
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    evidence: dict[str, float] = {}
    message: str = ""
    history: list[AlertChange] = []
    grid: str = ""
    micro_grid: str = ""
    signals: dict[str, int] = {}  # cause -> level of every signal active in the zone (see Detection.signals)
    measures: list[str] = []  # the checklist for this zone kind at this level (alerts.measures)
    diversion: list[Diversion] = []  # neighbours with spare room, best first
    acknowledged_at: float | None = None
    acknowledged_by: str = ""
    ack_comment: str = ""
    escalated_at: float | None = None  # last time the level went up
    resolved_by: str = ""  # "" when the zone recovered by itself
    resolve_comment: str = ""
    uncertain: bool = False  # a sensor-health signal is active in the zone
    uncertain_reason: str = ""
    inhibited_by: str | None = None  # id of the worse alert this one follows from
    silenced_by: str | None = None  # id of the silence that matches it
    incident: str | None = None  # id of the incident grouping adjacent riverside segments
    revision: int = 0  # history entries ever recorded (history itself is capped); numbers CAP messages

    @property
    def open(self) -> bool:
        return self.state != "resolved"
