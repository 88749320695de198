"""Graded levels (IV blue .. I red) per zone from share of capacity and density, without flapping.

Per zone and per sample:
1. raw level = the worse of the share level and the density level. Levels at or below the reported one
   hold until share < threshold - hysteresis (density < threshold × (1 - hysteresis)); levels above it need
   the plain threshold. So a zone hovering at a threshold stays where it is.
2. the reported level rises to L once raw has been ≥ L for min_duration_s of event time, and falls to L
   once raw has been ≤ L for min_duration_s; I red is reported at once.
3. a zone whose sensors are silent or faulty never falls (silence is not calm), but may still rise on
   whatever data is left.
4. the first healthy state of a zone the grader has no memory of is taken at its level at once (nothing to
   debounce against; keeps alerts open across a restart).

>>> from domain.loader import load_site
>>> from domain.values import ZoneState
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> g = Grader(site)
>>> def at(ts, occ):
...     return ZoneState(zone="seg-1", ts=ts, occupancy=occ, capacity=2000, share=occ / 2000,
...                      density=occ / 2000, inflow_per_min=120, outflow_per_min=80, arrivals_today=0)
>>> [g.grade(at(ts, occ)).level.label for ts, occ in [(0, 400), (10, 1640), (39, 1640), (40, 1640)]]
['normal', 'normal', 'normal', 'II orange']
>>> g.grade(at(41, 1640)).message
'Promenade segment 1 at 82% of capacity (1,640 / 2,000), 0.8 p/m², inflow 120/min: II orange'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.levels import GRADED, Level
from domain.site import Site, Thresholds
from domain.values import Cause, Detection, ZoneState

SNAPSHOT_VERSION = 1
_ALL = tuple(Level)


class _Grade:
    """One zone's grading memory."""

    __slots__ = ("at_least_since", "at_most_since", "cause", "last_ts", "level", "primed")

    def __init__(self) -> None:
        self.level = Level.NORMAL  # reported
        self.cause: Cause = "capacity"
        self.last_ts: float | None = None
        self.primed = False  # has graded a healthy state of this zone
        # Per level L (index int(L)): since when raw has been continuously ≥ L, resp. ≤ L; None if not now.
        self.at_least_since: list[float | None] = [None] * len(_ALL)
        self.at_most_since: list[float | None] = [None] * len(_ALL)


def level_for(value: float, thresholds: tuple[float, ...], current: Level, lower: tuple[float, ...]) -> Level:
    """Highest level whose threshold value reaches: `lower` thresholds for levels up to `current`."""
    out = Level.NORMAL
    for lv, up, down in zip(GRADED, thresholds, lower, strict=True):
        if value >= (down if lv <= current else up):
            out = lv
    return out


def raw_level(state: ZoneState, t: Thresholds, current: Level) -> tuple[Level, Cause]:
    """The worse of the share level and the density level, with hysteresis around `current`."""
    share_low = tuple(x - t.hysteresis for x in t.share)
    dens_low = tuple(x * (1.0 - t.hysteresis) for x in t.density)
    by_share = level_for(state.share, t.share, current, share_low)
    by_density = level_for(state.density, t.density, current, dens_low)
    if by_density > by_share:
        return by_density, "density"
    if by_share > by_density:
        return by_share, "capacity"
    # A tie (NORMAL included): name the measure closer to its red threshold.
    return by_share, "density" if state.density / t.density[-1] > state.share / t.share[-1] else "capacity"


class Grader:
    """Turns ZoneStates into Detections with cause 'capacity' or 'density'; keeps state per zone.

    `thresholds_for(zone_id, ts)` supplies each zone's thresholds at the state's time (the detection engine
    passes detect.overrides.Overrides.thresholds_for, so planned events and emergency mode apply); without
    it, the site's own thresholds.
    """

    def __init__(self, site: Site, *, thresholds_for: Callable[[str, float], Thresholds] | None = None) -> None:
        self.site = site
        self.thresholds_for = thresholds_for
        self._zones: dict[str, _Grade] = {}

    def grade(self, state: ZoneState) -> Detection:
        """Grade one zone's state and set `state.level` to the reported level."""
        zone = self.site.zones.get(state.zone)
        if zone is None:
            raise KeyError(f"zone {state.zone!r} is not in site {self.site.info.id!r}")
        t = self.site.thresholds_for(zone) if self.thresholds_for is None else self.thresholds_for(zone.id, state.ts)
        g = self._zones.setdefault(state.zone, _Grade())
        now = state.ts
        if g.last_ts is not None and now < g.last_ts:
            # An older state than one already graded: report without moving the timers backwards.
            now = g.last_ts
        raw, cause = raw_level(state, t, g.level)
        self._track(g, raw, now)
        if not state.healthy:
            # Time spent blind does not count towards calming down: after recovery the zone must show
            # min_duration_s of good low readings before its level drops.
            g.at_most_since = [None] * len(_ALL)
        before = g.level
        if not g.primed and state.healthy:
            # First data for a zone this grader has no memory of: no history to debounce against, so take
            # the level as it is. After a restart this keeps an open alert open, where waiting
            # min_duration_s would first resolve it and then raise it again.
            g.primed = True
            g.level = raw
        elif raw is Level.I:
            # Red at once: at crush densities a wave forms within minutes, and waiting out min_duration_s
            # would spend time the crowd managers need (DESIGN.md §3). Red thresholds sit high enough
            # that noise does not reach them.
            g.level = Level.I
        else:
            g.level = self._settle(g, now, t.min_duration_s, state.healthy)
        if g.level != before or g.level == raw:
            g.cause = cause
        g.last_ts = now
        state.level = g.level
        return Detection(
            zone=state.zone,
            ts=state.ts,
            level=g.level,
            cause=g.cause,
            score=max(state.share / t.share[-1], state.density / t.density[-1]),
            evidence={
                "occupancy": state.occupancy,
                "capacity": float(state.capacity),
                "share": state.share,
                "density": state.density,
                "inflow_per_min": state.inflow_per_min,
                "outflow_per_min": state.outflow_per_min,
                "healthy": 1.0 if state.healthy else 0.0,  # alerts/ never resolves on an unhealthy zone
            },
            message=self._message(zone.name_en, state, g.level),
        )

    @staticmethod
    def _track(g: _Grade, raw: Level, now: float) -> None:
        for lv in _ALL:
            i = int(lv)
            if raw >= lv:
                if g.at_least_since[i] is None:
                    g.at_least_since[i] = now
            else:
                g.at_least_since[i] = None
            if raw <= lv:
                if g.at_most_since[i] is None:
                    g.at_most_since[i] = now
            else:
                g.at_most_since[i] = None

    @staticmethod
    def _settle(g: _Grade, now: float, hold_s: float, healthy: bool) -> Level:
        for lv in reversed(_ALL):  # the highest level held long enough above the reported one
            since = g.at_least_since[int(lv)]
            if lv <= g.level:
                break
            if since is not None and now - since >= hold_s:
                return lv
        if not healthy:
            return g.level  # silent or faulty sensors: hold, never resolve on silence
        for lv in _ALL:  # the lowest level below the reported one that raw has stayed at or under
            if lv >= g.level:
                break
            since = g.at_most_since[int(lv)]
            if since is not None and now - since >= hold_s:
                return lv
        return g.level

    @staticmethod
    def _message(name: str, s: ZoneState, level: Level) -> str:
        text = (
            f"{name} at {s.share:.0%} of capacity ({s.occupancy:,.0f} / {s.capacity:,}), "
            f"{s.density:.1f} p/m², inflow {s.inflow_per_min:,.0f}/min: {level.label}"
        )
        if not s.healthy:
            text += " (sensor data missing or faulty: level held, not resolved)"
        return text

    # ---- restart --------------------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        zones = {
            zid: {
                "level": int(g.level),
                "primed": g.primed,
                "cause": g.cause,
                "last_ts": g.last_ts,
                "at_least_since": list(g.at_least_since),
                "at_most_since": list(g.at_most_since),
            }
            for zid, g in self._zones.items()
        }
        return {"version": SNAPSHOT_VERSION, "zones": zones}

    def from_snapshot(self, data: dict[str, Any]) -> None:
        """Restore in place from to_snapshot(); ValueError on a snapshot that does not fit, state kept."""
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise ValueError(f"grader snapshot version {version!r} is not {SNAPSHOT_VERSION}")
        zones: dict[str, _Grade] = {}
        try:
            for zid, d in data["zones"].items():
                if zid not in self.site.zones:
                    continue  # zone removed from the site since: nothing to grade
                g = _Grade()
                g.level = Level(int(d["level"]))
                g.primed = bool(d["primed"])
                g.cause = _cause(d["cause"])
                g.last_ts = None if d["last_ts"] is None else float(d["last_ts"])
                g.at_least_since = _times(d["at_least_since"])
                g.at_most_since = _times(d["at_most_since"])
                zones[zid] = g
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"grader snapshot does not fit: {type(e).__name__}: {e}") from e
        self._zones = zones


def _cause(x: Any) -> Cause:
    if x not in ("capacity", "density"):
        raise ValueError(f"cause {x!r}")
    return "capacity" if x == "capacity" else "density"


def _times(xs: Any) -> list[float | None]:
    out = [None if x is None else float(x) for x in xs]
    if len(out) != len(_ALL):
        raise ValueError(f"{len(out)} level timers, expected {len(_ALL)}")
    return out
