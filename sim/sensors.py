"""What the site's sensors would report about the true flows: counters, area counts and densities.

Counters of a zone share its arrivals and departures (multinomial split, equal chances). Readings come out
as domain.messages structs with seq 0; the fault layer numbers them, as the device would.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from domain.messages import CountMsg, DensityMsg, Message, OccupancyMsg, TotalMsg
from domain.site import Sensor, Site
from sim.model import FloatArray, IntArray

NOISE_SD = 0.02  # relative noise of area counts and densities


@dataclass(frozen=True)
class Emitted:
    """One reading as the sensor made it, before faults and encoding."""

    ts: float  # event time, epoch seconds
    sensor: str
    kind: str
    msg: Message


def _first_due(t0: float, interval: float) -> float:
    """Devices report on their own clock grid: the first multiple of the interval after t0."""
    return (math.floor(t0 / interval) + 1) * interval


class SensorBank:
    """All sensors of a site, fed the true flows step by step."""

    def __init__(self, site: Site, zone_ids: list[str], rng: np.random.Generator, t0: float) -> None:
        self.site = site
        self.rng = rng
        self.tz = ZoneInfo(site.info.timezone)
        self.sensors: list[Sensor] = list(site.sensors.values())
        zpos = {z: i for i, z in enumerate(zone_ids)}
        self.zone_ix = np.array([zpos[s.zone] for s in self.sensors], dtype=np.int64)
        self.area = np.array([site.zones[z].area_m2 for z in zone_ids], dtype=np.float64)
        # Counters: their zone, their slot among the zone's counters, and the split probabilities.
        self.counter_ix = [i for i, s in enumerate(self.sensors) if s.kind == "counter"]
        per_zone: dict[int, int] = {}
        self.counter_slot = np.zeros(len(self.sensors), dtype=np.int64)
        for i in self.counter_ix:
            z = int(self.zone_ix[i])
            self.counter_slot[i] = per_zone.get(z, 0)
            per_zone[z] = per_zone.get(z, 0) + 1
        kmax = max(per_zone.values(), default=1)
        self.pvals = np.zeros((len(zone_ids), kmax))
        self.pvals[:, 0] = 1.0  # zones without counters: a dummy column nobody reads
        for z, k in per_zone.items():
            self.pvals[z, :] = 0.0
            self.pvals[z, :k] = 1.0 / k
        n = len(self.sensors)
        self.acc_in = np.zeros(n, dtype=np.int64)  # since the last report (interval mode)
        self.acc_out = np.zeros(n, dtype=np.int64)
        self.tot_in = np.zeros(n, dtype=np.int64)  # since local midnight (total mode)
        self.tot_out = np.zeros(n, dtype=np.int64)
        self.next_due = np.array([_first_due(t0, s.interval_s) for s in self.sensors], dtype=np.float64)
        self.last_report = np.full(n, t0, dtype=np.float64)

    def seed_totals(self, since_midnight: FloatArray, occupancy: IntArray) -> None:
        """Running totals at the start of a run: the day's expected arrivals so far, less who is still in."""
        ins = self._split(self.rng.poisson(since_midnight).astype(np.int64))
        inside = self._split(occupancy)
        ix = self.counter_ix
        self.tot_in[ix] = ins[ix]
        self.tot_out[ix] = np.maximum(ins[ix] - inside[ix], 0)

    def _split(self, per_zone: IntArray) -> IntArray:
        """Per-zone people → per-sensor shares among the zone's counters (0 for other sensors)."""
        parts = self.rng.multinomial(per_zone, self.pvals)
        out = np.zeros(len(self.sensors), dtype=np.int64)
        ix = self.counter_ix
        out[ix] = parts[self.zone_ix[ix], self.counter_slot[ix]]
        return out

    def observe(self, arrivals: IntArray, departures: IntArray) -> None:
        ins, outs = self._split(arrivals), self._split(departures)
        self.acc_in += ins
        self.acc_out += outs
        self.tot_in += ins
        self.tot_out += outs

    def midnight(self) -> None:
        """Running totals restart at local midnight (after the midnight report went out)."""
        self.tot_in[:] = 0
        self.tot_out[:] = 0

    def report(self, t: float, occupancy: IntArray) -> list[Emitted]:
        """Readings of every sensor due at t (the end of a step)."""
        due = np.nonzero(self.next_due <= t + 1e-9)[0]
        if len(due) == 0:
            return []
        stamp = dt.datetime.fromtimestamp(t, self.tz)
        out: list[Emitted] = []
        for i in due.tolist():
            s = self.sensors[i]
            out.append(Emitted(t, s.id, *self._reading(i, s, stamp, t, occupancy)))
            self.last_report[i] = t
            interval = s.interval_s
            self.next_due[i] = _first_due(t, interval) if interval > 0 else math.inf
        return out

    def _reading(
        self, i: int, s: Sensor, stamp: dt.datetime, t: float, occupancy: IntArray
    ) -> tuple[str, Message]:
        rev = s.direction == "reversed"  # mounted the other way round: swap in and out on the wire
        if s.kind == "counter" and s.mode == "interval":
            a, b = int(self.acc_in[i]), int(self.acc_out[i])
            self.acc_in[i] = self.acc_out[i] = 0
            if rev:
                a, b = b, a
            interval = round(t - float(self.last_report[i]), 3)
            return "count", CountMsg(sensor=s.id, ts=stamp, seq=0, interval_s=interval, in_=a, out=b)
        if s.kind == "counter":
            self.acc_in[i] = self.acc_out[i] = 0
            a, b = int(self.tot_in[i]), int(self.tot_out[i])
            if rev:
                a, b = b, a
            return "total", TotalMsg(sensor=s.id, ts=stamp, seq=0, in_total=a, out_total=b)
        occ = float(occupancy[self.zone_ix[i]])
        noisy = max(0.0, occ * (1.0 + self.rng.normal(0.0, NOISE_SD)))
        if s.kind == "area":
            return "occupancy", OccupancyMsg(sensor=s.id, ts=stamp, seq=0, count=round(noisy))
        dens = noisy / float(self.area[self.zone_ix[i]])
        return "density", DensityMsg(sensor=s.id, ts=stamp, seq=0, density=round(dens, 4))
