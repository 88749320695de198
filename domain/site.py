"""The site: a district's grids, micro-grids, zones (incl. riverside segments), sensors and thresholds.

Loaded from a TOML site file by `domain.loader.load_site`; every type here is frozen and rejects unknown keys.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from domain.levels import GRADED, Level

GridKind = Literal["residential", "business"]
ZoneKind = Literal[
    "riverside_segment", "plaza", "bridge", "metro_exit", "mall", "office", "street", "park", "residential"
]
SensorKind = Literal["counter", "area", "density"]
CounterMode = Literal["interval", "total"]
# "in": the counter's `in` means entering the zone; "reversed": it is mounted the other way round.
Direction = Literal["in", "reversed"]


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Thresholds(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Level thresholds, in the order IV blue, III yellow, II orange, I red."""

    share: tuple[float, float, float, float] = (0.6, 0.7, 0.8, 0.95)
    density: tuple[float, float, float, float] = (1.5, 2.0, 3.0, 4.0)
    # A zone falls back a level only once below threshold - hysteresis (share) / threshold * (1 - hysteresis)
    # (density), so a zone hovering at a threshold does not flap.
    hysteresis: float = 0.05
    min_duration_s: float = 30.0

    def share_for(self, level: Level) -> float:
        return self.share[GRADED.index(level)]

    def density_for(self, level: Level) -> float:
        return self.density[GRADED.index(level)]


class SiteInfo(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    name_zh: str
    name_en: str
    timezone: str = "Asia/Shanghai"
    peak_day_visits: int = 1_470_000
    # WGS84 (latitude, longitude) of the polygons' local frame origin (0, 0): CAP areas need real coordinates.
    origin: tuple[float, float] = (31.2397, 121.4998)


class Grid(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    name_zh: str
    name_en: str
    kind: GridKind


class MicroGrid(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    grid: str
    name_zh: str
    name_en: str


class Zone(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    name_zh: str
    name_en: str
    kind: ZoneKind
    grid: str
    micro_grid: str
    area_m2: float
    capacity: int
    capacity_rule: str  # where the capacity comes from, for a person checking it
    visit_share: float  # share of the district's daily arrivals that come to this zone
    dwell_min: float  # mean stay, minutes
    shape: str  # name of the day shape in [profile.shapes]
    polygon: tuple[tuple[float, float], ...]  # schematic, local metric frame (x east, y north, metres)
    neighbours: tuple[str, ...] = ()
    segment: int | None = None  # order along the river, for riverside segments
    hotspot: bool = False
    thresholds: Thresholds | None = None  # overrides the site default

    @property
    def name(self) -> str:
        return f"{self.name_en} ({self.name_zh})"


class Sensor(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    zone: str
    kind: SensorKind
    mode: CounterMode = "interval"  # counters only
    entrance: str = ""  # counters: which entrance or line it watches
    direction: Direction = "in"
    interval_s: float = 60.0  # how often it reports


class DayShape(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Arrival weight over the day as (hour, weight) knots, linearly interpolated to 15-minute slots."""

    weekday: tuple[tuple[float, float], ...]
    holiday: tuple[tuple[float, float], ...]


class ProfileSpec(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Total arrivals on a day of this type relative to the peak day (a holiday at its busiest is 1.0).
    day_factor: dict[str, float]
    shapes: dict[str, DayShape]
    source: str = ""


class SiteFile(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The TOML file as written; `domain.loader` checks it and builds a `Site`."""

    site: SiteInfo
    thresholds: Thresholds
    profile: ProfileSpec
    grids: tuple[Grid, ...]
    micro_grids: tuple[MicroGrid, ...]
    zones: tuple[Zone, ...]
    sensors: tuple[Sensor, ...]


class Site:
    """A checked site with its lookups built once. Read-only by convention."""

    __slots__ = (
        "_by_zone",
        "file",
        "grids",
        "index",
        "info",
        "micro_grids",
        "path",
        "profile",
        "sensors",
        "thresholds",
        "zones",
    )

    def __init__(self, spec: SiteFile, path: str = "<memory>") -> None:
        self.file = spec
        self.path = path
        self.info = spec.site
        self.thresholds = spec.thresholds
        self.profile = spec.profile
        self.grids: dict[str, Grid] = {g.id: g for g in spec.grids}
        self.micro_grids: dict[str, MicroGrid] = {m.id: m for m in spec.micro_grids}
        self.zones: dict[str, Zone] = {z.id: z for z in spec.zones}
        self.sensors: dict[str, Sensor] = {s.id: s for s in spec.sensors}
        # Sensor id -> its position in site order: the one per-sensor lookup the models share, which keep their
        # per-sensor state in columns at these positions (a 50,000-sensor site: one dict, not one per model).
        self.index: dict[str, int] = {sid: i for i, sid in enumerate(self.sensors)}
        # Each zone's sensors in site order, once: asking per zone and tick must not walk every sensor.
        by_zone: dict[str, list[Sensor]] = {}
        for s in self.sensors.values():
            by_zone.setdefault(s.zone, []).append(s)
        self._by_zone: dict[str, tuple[Sensor, ...]] = {z: tuple(ss) for z, ss in by_zone.items()}

    def thresholds_for(self, zone: Zone | str) -> Thresholds:
        z = self.zones[zone] if isinstance(zone, str) else zone
        return z.thresholds or self.thresholds

    def sensors_of(self, zone_id: str) -> list[Sensor]:
        """The zone's sensors in site order (a new list: the caller may change it)."""
        return list(self._by_zone.get(zone_id, ()))

    def riverside(self) -> list[Zone]:
        segs = [z for z in self.zones.values() if z.kind == "riverside_segment"]
        return sorted(segs, key=lambda z: (z.segment or 0, z.id))

    def topic_of(self, sensor: Sensor, kind: str) -> str:
        """MQTT topic a sensor publishes on: dt/crowdflow/<grid>/<zone>/<sensor>/<kind> (docs/messages.md)."""
        zone = self.zones[sensor.zone]
        return f"dt/crowdflow/{zone.grid}/{zone.id}/{sensor.id}/{kind}"
