"""The flow model: people arriving at and leaving each zone, vectorised over zones, one clock step at a time.

arrivals[zone] ~ Poisson(arrival rate × step), the rate being the profile's for the zone's 15-minute slot,
    times the surge multipliers, plus the extra arrivals of peak_share surges;
departures[zone] ~ Binomial(occupancy, 1 - exp(-step / (dwell × surge dwell factor))).
Occupancy is exact (the ground truth); departures never exceed it, so it never goes negative.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from domain.profile import SLOT_S, CapacityProfile
from domain.site import Site
from sim.scenario import Scenario, check_against_site, surge_zones

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SurgePlan:
    """One surge resolved to epoch times and per-zone values at its peak (neutral for untouched zones)."""

    start: float
    peak: float
    end: float
    multiplier: FloatArray  # [zone] arrival factor at the peak (1.0: none)
    extra: FloatArray  # [zone] extra people in the steady state at the peak (0.0: none)
    dwell: FloatArray  # [zone] dwell factor at the peak (1.0: none)

    def ramp(self, t: float) -> float:
        """0 outside the surge, rising linearly to 1 at the peak and back to 0 at the end."""
        if t <= self.start or t >= self.end:
            return 0.0
        if t <= self.peak:
            return (t - self.start) / (self.peak - self.start) if self.peak > self.start else 1.0
        return (self.end - t) / (self.end - self.peak)


class FlowModel:
    """True occupancy of every zone of a site under a scenario. Zones are in site order (`zone_ids`)."""

    def __init__(self, site: Site, scenario: Scenario, rng: np.random.Generator) -> None:
        check_against_site(scenario, site)
        self.site = site
        self.scenario = scenario
        self.rng = rng
        self.profile = CapacityProfile(site)
        self.tz = ZoneInfo(site.info.timezone)
        self.zone_ids = self.profile.zone_ids
        zones = [site.zones[z] for z in self.zone_ids]
        self.capacity = np.array([z.capacity for z in zones], dtype=np.int64)
        self.area = np.array([z.area_m2 for z in zones], dtype=np.float64)
        self.dwell_s = np.array([z.dwell_min * 60.0 for z in zones], dtype=np.float64)
        self.step_s = scenario.step_s
        self.t0, self.t1 = scenario.window(self.tz)
        self.surges = [self._plan(i) for i in range(len(scenario.surges))]
        self.t = self.t0
        # Start in the steady state: an M/M/inf queue holds Poisson(rate × mean stay) people.
        steady = self.rate_per_s(self.t0) * self.dwell_s * self.dwell_factor(self.t0)
        self.occupancy: IntArray = self.rng.poisson(steady).astype(np.int64)

    def day_type(self, ts: float) -> str:
        """The scenario's day type on its own day; the site's calendar for the hours past midnight."""
        if dt.datetime.fromtimestamp(ts, self.tz).date() == self.scenario.day:
            return self.scenario.day_type
        return self.profile.day_type_of(ts)

    def base_rate_per_s(self, ts: float) -> FloatArray:
        """Expected arrivals per second into each zone from the profile, without surges."""
        arr = self.profile.arrivals(self.day_type(ts))
        return np.asarray(arr[:, self.profile.slot_of(ts)] / SLOT_S, dtype=np.float64)

    def dwell_factor(self, ts: float) -> FloatArray:
        out = np.ones(len(self.zone_ids))
        for s in self.surges:
            r = s.ramp(ts)
            if r > 0:
                out *= 1.0 + (s.dwell - 1.0) * r
        return out

    def rate_per_s(self, ts: float) -> FloatArray:
        """Expected arrivals per second with the surges active at ts."""
        rate = self.base_rate_per_s(ts)
        extra = np.zeros(len(self.zone_ids))
        for s in self.surges:
            r = s.ramp(ts)
            if r > 0:
                rate = rate * (1.0 + (s.multiplier - 1.0) * r)
                extra += s.extra * r
        # Extra people in the steady state need extra arrivals = people / mean stay.
        return np.asarray(rate + extra / (self.dwell_s * self.dwell_factor(ts)), dtype=np.float64)

    def _plan(self, i: int) -> SurgePlan:
        spec = self.scenario.surges[i]
        start, peak, end = (self.scenario.at(t, self.tz) for t in (spec.start, spec.peak, spec.end))
        mask = np.isin(np.array(self.zone_ids), surge_zones(spec, self.site))
        n = len(self.zone_ids)
        dwell = np.where(mask, spec.dwell_factor, 1.0)
        mult, extra = np.ones(n), np.zeros(n)
        if spec.multiplier is not None:
            mult = np.where(mask, spec.multiplier, 1.0)
        else:
            # Enough extra people that the steady state (rate × stay) reaches peak_share × capacity at the
            # peak; with `spread`, each zone's share is drawn around it (seeded: zones differ, runs do not).
            assert spec.peak_share is not None
            draw = np.random.default_rng([self.scenario.seed, i]).uniform(-1.0, 1.0, n)
            share = spec.peak_share * (1.0 + spec.spread * draw)
            baseline = self.base_rate_per_s(peak) * self.dwell_s * dwell
            extra = np.where(mask, np.maximum(share * self.capacity - baseline, 0.0), 0.0)
        return SurgePlan(start, peak, end, mult.astype(np.float64), extra.astype(np.float64), dwell)

    def step(self) -> tuple[IntArray, IntArray]:
        """Advance one step; returns (arrivals, departures) per zone during it. `t` becomes the step's end."""
        mid = self.t + self.step_s / 2  # rates at the middle of the step
        arrivals = self.rng.poisson(self.rate_per_s(mid) * self.step_s).astype(np.int64)
        p_leave = 1.0 - np.exp(-self.step_s / (self.dwell_s * self.dwell_factor(mid)))
        departures = self.rng.binomial(self.occupancy, p_leave).astype(np.int64)
        # Those who leave were there at the start of the step, so occupancy stays >= 0.
        self.occupancy = self.occupancy - departures + arrivals
        self.t += self.step_s
        return arrivals, departures

    def expected_since_midnight(self, ts: float) -> FloatArray:
        """Expected arrivals per zone from local midnight to ts (for realistic running totals at start)."""
        arr = self.profile.arrivals(self.day_type(ts))
        elapsed = (ts - self.profile.local_midnight(ts)) / SLOT_S
        full = int(elapsed)
        out = arr[:, :full].sum(axis=1)
        if full < arr.shape[1]:
            out = out + arr[:, full] * (elapsed - full)
        return np.asarray(out, dtype=np.float64)
