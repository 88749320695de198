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


AlertState = Literal["raised", "escalated", "acknowledged", "resolved"]


class AlertChange(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    state: AlertState
    level: Level
    note: str = ""
    by: str = ""


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

    @property
    def open(self) -> bool:
        return self.state != "resolved"
