"""The capacity profile: how a day's arrivals split over zones and 15-minute slots.

expected arrivals[zone, slot] = peak_day_visits × day_factor[day type] × zone.visit_share × shape[slot]
where each zone's shape (weekday or holiday) is its knots interpolated to 96 slots and normalised to sum 1.
So a peak day (day_factor 1.0) adds up to exactly `peak_day_visits` (1.47M for Lujiazui) over the district.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from domain.site import Site

SLOTS_PER_DAY = 96
SLOT_S = 900.0

# Chinese public holidays that matter for crowd shape (fixed-date ones; the lunar ones come from scenarios).
FIXED_HOLIDAYS = {(1, 1), (5, 1), (5, 2), (5, 3), (10, 1), (10, 2), (10, 3), (10, 4), (10, 5), (10, 6), (10, 7)}


def interpolate_shape(knots: tuple[tuple[float, float], ...]) -> npt.NDArray[np.float64]:
    """Knots (hour, weight) → 96 slot weights summing to 1, sampled at each slot's midpoint."""
    hours = np.array([h for h, _ in knots], dtype=float)
    weights = np.array([w for _, w in knots], dtype=float)
    mid = (np.arange(SLOTS_PER_DAY) + 0.5) / 4.0
    out = np.interp(mid, hours, weights)
    total = out.sum()
    return np.asarray(out / total if total > 0 else out, dtype=np.float64)


class CapacityProfile:
    """Expected arrivals per zone per 15-minute slot, for each day type of the site."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.zone_ids: list[str] = list(site.zones)
        self.zone_pos = {z: i for i, z in enumerate(self.zone_ids)}
        self.peak_day_visits = site.info.peak_day_visits
        self.day_factor = dict(site.profile.day_factor)
        self.tz = ZoneInfo(site.info.timezone)
        self._cache: dict[str, npt.NDArray[np.float64]] = {}

    def day_types(self) -> list[str]:
        return list(self.day_factor)

    def arrivals(self, day_type: str) -> npt.NDArray[np.float64]:
        """Array [zone, slot] of expected arrivals on a day of this type (zones in site order)."""
        cached = self._cache.get(day_type)
        if cached is not None:
            return cached
        if day_type not in self.day_factor:
            raise KeyError(f"day type {day_type!r} not in the site's profile.day_factor {sorted(self.day_factor)}")
        # Day types other than weekday use the holiday shape: busy leisure days look alike hour by hour.
        part = "weekday" if day_type == "weekday" else "holiday"
        out = np.empty((len(self.zone_ids), SLOTS_PER_DAY))
        for i, zid in enumerate(self.zone_ids):
            zone = self.site.zones[zid]
            shape = interpolate_shape(getattr(self.site.profile.shapes[zone.shape], part))
            out[i] = self.peak_day_visits * self.day_factor[day_type] * zone.visit_share * shape
        self._cache[day_type] = out
        return out

    def day_type_of(self, ts: float) -> str:
        local = dt.datetime.fromtimestamp(ts, self.tz)
        if (local.month, local.day) == (12, 31) and "nye" in self.day_factor:
            return "nye"
        if (local.month, local.day) in FIXED_HOLIDAYS or local.weekday() >= 5:
            return "holiday"
        return "weekday"

    def slot_of(self, ts: float) -> int:
        local = dt.datetime.fromtimestamp(ts, self.tz)
        return (local.hour * 60 + local.minute) // 15

    def local_midnight(self, ts: float) -> float:
        local = dt.datetime.fromtimestamp(ts, self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def expected_so_far(self, ts: float, day_type: str | None = None) -> float:
        """District arrivals the profile expects from local midnight up to ts (partial slot pro rata)."""
        a = self.arrivals(day_type or self.day_type_of(ts)).sum(axis=0)
        elapsed = (ts - self.local_midnight(ts)) / SLOT_S
        full = int(min(elapsed, SLOTS_PER_DAY))
        part = elapsed - full if full < SLOTS_PER_DAY else 0.0
        return float(a[:full].sum() + (a[full] * part if full < SLOTS_PER_DAY else 0.0))

    def expected_rate_per_min(self, zone_id: str, ts: float) -> float:
        """Expected arrivals per minute into a zone at ts, from its 15-minute slot."""
        a = self.arrivals(self.day_type_of(ts))
        return float(a[self.zone_pos[zone_id], self.slot_of(ts)] / 15.0)
