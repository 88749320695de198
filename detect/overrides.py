"""What planned events and emergency mode change in detection, per zone and moment.

The alert manager owns events and emergency modes (it stores, audits and expires them) and hands the current
lists to an `Overrides` with `set_events` / `set_emergency`; detection asks it, per zone and tick:

- `thresholds_for(zone, now)`: the site's thresholds for the zone; during an active planned event naming the
  zone, the event's share and density thresholds where it gives them (when several overlap, the strictest of
  each, so a second event can never loosen a first); in emergency mode for the zone's grid or the district,
  share and density thresholds times `emergency_tighten` (applied after the event's, so emergency tightens
  an event too) and min_duration_s halved, so levels rise sooner.
- `flow_factor(zone, now)`: how much more inflow than usual is planned (the product of the active events'
  factors): the surge monitor expects that much more, so a planned crowd is not a surge.
- `describe(zone, now)`: one line for an alert's message.

Emergency mode has no end time: it holds from the moment it is set until the command centre switches back,
which the alert manager passes on as a new `set_emergency` list.

>>> from alerts.model import EmergencyMode, PlannedEvent
>>> from domain.loader import load_site
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> ov = Overrides(site)
>>> ov.set_events([PlannedEvent(id="e1", name="NYE fireworks", zones=("seg-1",), starts_at=1798725600.0,
...                             ends_at=1798734600.0, flow_factor=3.0, reason="", created_by="ops",
...                             created_at=0.0, share=(0.6, 0.7, 0.8, 0.9))])
>>> now = 1798730000.0  # 31 Dec 2026 23:13 in Shanghai
>>> ov.thresholds_for("seg-1", now).share, ov.flow_factor("seg-1", now), ov.flow_factor("seg-2", now)
((0.6, 0.7, 0.8, 0.9), 3.0, 1.0)
>>> ov.describe("seg-1", now)
"event 'NYE fireworks' until 00:30: expected flow x3, red at 90%"
>>> ov.set_emergency([EmergencyMode(scope="district", since=now, by="command", reason="crowd")])
>>> t = ov.thresholds_for("seg-1", now)
>>> [round(x, 3) for x in t.share], t.min_duration_s
([0.54, 0.63, 0.72, 0.81], 15.0)
>>> ov.describe("seg-2", now)
'emergency mode (district)'
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from itertools import pairwise
from zoneinfo import ZoneInfo

from alerts.model import EmergencyMode, PlannedEvent
from domain.site import Site, Thresholds, Zone

DISTRICT = "district"
_MAX_SHARE = 1.5  # above this a "share" is surely a percentage typed by mistake (95 for 0.95)
_MAX_DENSITY = 10.0  # people/m²; sensor health calls anything above this implausible

Quad = tuple[float, float, float, float]


class Overrides:
    """The planned events and emergency scopes in force, as detection sees them. Nothing active by default."""

    def __init__(self, site: Site, *, emergency_tighten: float = 0.9) -> None:
        if not (math.isfinite(emergency_tighten) and 0.0 < emergency_tighten <= 1.0):
            raise ValueError(
                f"emergency_tighten must be within (0, 1] (0.9 = thresholds at 90% of normal), got {emergency_tighten}"
            )
        self.site = site
        self.emergency_tighten = emergency_tighten
        self._tz = ZoneInfo(site.info.timezone)
        self._events: tuple[PlannedEvent, ...] = ()
        self._by_zone: dict[str, list[PlannedEvent]] = {}
        self._modes: tuple[EmergencyMode, ...] = ()
        self._scopes: frozenset[str] = frozenset()

    # ---- set by the alert manager -----------------------------------------------------------------

    @property
    def events(self) -> tuple[PlannedEvent, ...]:
        return self._events

    @property
    def emergency(self) -> tuple[EmergencyMode, ...]:
        return self._modes

    def check_event(self, event: PlannedEvent) -> None:
        """ValueError saying what to fix if detection cannot use `event` (for the API to call before storing)."""
        what = f"planned event {event.id!r} ({event.name!r})"
        if not event.zones:
            raise ValueError(f"{what} names no zones: give at least one zone id of site {self.site.info.id!r}")
        unknown = [z for z in event.zones if z not in self.site.zones]
        if unknown:
            raise ValueError(
                f"{what} names zones {', '.join(map(repr, unknown))} that site {self.site.info.id!r} "
                f"({self.site.path}) does not have; use zone ids from its [[zones]]"
            )
        if not (math.isfinite(event.starts_at) and math.isfinite(event.ends_at) and event.ends_at > event.starts_at):
            raise ValueError(f"{what}: ends_at ({event.ends_at}) must be a time after starts_at ({event.starts_at})")
        if not (math.isfinite(event.flow_factor) and event.flow_factor > 0.0):
            raise ValueError(
                f"{what}: flow_factor must be a positive number (3 = three times the usual inflow), "
                f"got {event.flow_factor}"
            )
        if event.share is not None:
            _check_increasing(event.share, f"{what}: share", _MAX_SHARE, "fractions of capacity, e.g. 0.95 for 95%")
        if event.density is not None:
            _check_increasing(event.density, f"{what}: density", _MAX_DENSITY, "people per m², e.g. 4.0")

    def set_events(self, events: Sequence[PlannedEvent]) -> None:
        """Replace the known events (past, current and future ones alike: activity is judged per `now`).
        All or nothing: on a ValueError the previous events stay in force."""
        for e in events:
            self.check_event(e)
        by_zone: dict[str, list[PlannedEvent]] = {}
        for e in events:
            for z in dict.fromkeys(e.zones):  # a zone listed twice counts once
                by_zone.setdefault(z, []).append(e)
        self._events = tuple(events)
        self._by_zone = by_zone

    def set_emergency(self, modes: Sequence[EmergencyMode]) -> None:
        """Replace the scopes in emergency mode ("district" or grid ids); an empty list switches back.
        All or nothing: on a ValueError the previous modes stay in force."""
        for m in modes:
            if m.scope != DISTRICT and m.scope not in self.site.grids:
                raise ValueError(
                    f"emergency mode scope {m.scope!r} is neither {DISTRICT!r} nor a grid of site "
                    f"{self.site.info.id!r}; grids: {', '.join(sorted(self.site.grids))}"
                )
        self._modes = tuple(modes)
        self._scopes = frozenset(m.scope for m in modes)

    # ---- asked by detection -----------------------------------------------------------------------

    def active_events(self, zone_id: str, now: float) -> list[PlannedEvent]:
        """The events naming the zone that are active at `now`, in the order they were set."""
        return [e for e in self._by_zone.get(zone_id, ()) if e.active(now)]

    def in_emergency(self, zone_id: str) -> bool:
        """Is the zone's grid, or the whole district, in emergency mode?"""
        if not self._scopes:
            return False
        return DISTRICT in self._scopes or self._zone(zone_id).grid in self._scopes

    def thresholds_for(self, zone_id: str, now: float) -> Thresholds:
        base = self.site.thresholds_for(self._zone(zone_id))
        events = self.active_events(zone_id, now)
        emergency = self.in_emergency(zone_id)
        if not events and not emergency:
            return base  # the common case: no copy
        share, density = base.share, base.density
        given_share = [e.share for e in events if e.share is not None]
        given_density = [e.density for e in events if e.density is not None]
        if given_share:
            share = _strictest(given_share)
        if given_density:
            density = _strictest(given_density)
        min_duration = base.min_duration_s
        if emergency:
            share = _scaled(share, self.emergency_tighten)
            density = _scaled(density, self.emergency_tighten)
            min_duration /= 2.0
        return Thresholds(share=share, density=density, hysteresis=base.hysteresis, min_duration_s=min_duration)

    def flow_factor(self, zone_id: str, now: float) -> float:
        """Planned inflow relative to the usual: the product of the active events' factors, 1.0 without."""
        factor = 1.0
        for e in self.active_events(zone_id, now):
            factor *= e.flow_factor
        return factor

    def describe(self, zone_id: str, now: float) -> str:
        """What is in force for the zone, for an alert's message; '' when nothing is.

        e.g. "event 'NYE fireworks' until 00:30: expected flow x3, red at 90%; emergency mode (district)"."""
        parts = [self._describe_event(e, now) for e in self.active_events(zone_id, now)]
        if self.in_emergency(zone_id):
            if DISTRICT in self._scopes:
                parts.append(f"emergency mode ({DISTRICT})")
            else:
                grid = self.site.grids[self._zone(zone_id).grid]
                parts.append(f"emergency mode ({grid.name_en} grid)")
        return "; ".join(parts)

    def _describe_event(self, e: PlannedEvent, now: float) -> str:
        end = dt.datetime.fromtimestamp(e.ends_at, self._tz)
        # Within a day the hour says it; a longer event needs its date.
        until = end.strftime("%H:%M") if e.ends_at - now < 86_400.0 else end.strftime("%d %b %H:%M")
        what = []
        if e.flow_factor != 1.0:
            what.append(f"expected flow x{e.flow_factor:g}")
        red = []
        if e.share is not None:
            red.append(f"{e.share[-1]:.0%}")
        if e.density is not None:
            red.append(f"{e.density[-1]:g} p/m²")
        if red:
            what.append("red at " + " or ".join(red))
        text = f"event {e.name!r} until {until}"
        return f"{text}: {', '.join(what)}" if what else text

    def _zone(self, zone_id: str) -> Zone:
        zone = self.site.zones.get(zone_id)
        if zone is None:
            raise KeyError(f"zone {zone_id!r} is not in site {self.site.info.id!r}")
        return zone


def _check_increasing(values: Sequence[float], what: str, upper: float, unit: str) -> None:
    if len(values) != 4:
        raise ValueError(f"{what} needs 4 thresholds (IV blue, III yellow, II orange, I red), got {len(values)}")
    if not all(math.isfinite(v) and 0.0 < v <= upper for v in values):
        raise ValueError(f"{what} thresholds {tuple(values)} must be within (0, {upper:g}]: {unit}")
    if not all(a < b for a, b in pairwise(values)):
        raise ValueError(f"{what} thresholds {tuple(values)} must increase from IV blue to I red")


def _strictest(quads: Sequence[Quad]) -> Quad:
    """Element-wise minimum: still increasing when each is (min(a_i, b_i) <= a_i < a_{i+1}, same for b)."""
    a, b, c, d = (min(q[i] for q in quads) for i in range(4))
    return (a, b, c, d)


def _scaled(q: Quad, k: float) -> Quad:
    return (q[0] * k, q[1] * k, q[2] * k, q[3] * k)
