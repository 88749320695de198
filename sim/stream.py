"""The simulation as a stream of messages in delivery order: model → sensors → faults → (window) → out.

`iter_messages` is pure (no network, no wall clock): the publisher and the tests both consume it.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from domain.messages import StatusMsg
from domain.site import Site
from sim.faults import FaultInjector
from sim.model import FlowModel
from sim.scenario import Scenario
from sim.sensors import Emitted, SensorBank
from sim.truth import TruthRecorder
from sim.wire import SimMessage


def resolve_window(
    scenario: Scenario, tz: ZoneInfo, start: str | None, duration_s: float | None
) -> tuple[float, float]:
    """The published part of a scenario: from `start` (a local time such as "23:00" of the scenario, or an
    ISO datetime) for `duration_s` seconds, clipped to the scenario's own window."""
    t0, t1 = scenario.window(tz)
    w0 = t0
    if start is not None:
        try:
            if "T" in start or "-" in start:
                when = dt.datetime.fromisoformat(start)
                w0 = (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()
            else:
                w0 = scenario.at(dt.time.fromisoformat(start), tz)
        except ValueError as e:
            raise ValueError(f"start {start!r}: not a local time (HH:MM[:SS]) or ISO datetime ({e})") from e
        if not t0 <= w0 < t1:
            raise ValueError(
                f"start {start!r} is outside scenario '{scenario.name}' ({scenario.start}-{scenario.end})"
            )
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    w1 = min(t1, w0 + duration_s) if duration_s is not None else t1
    return w0, w1


class Simulation:
    """One run of a scenario on a site. Iterate `messages()` once; `truth` holds the ground truth after."""

    def __init__(
        self, site: Site, scenario: Scenario, start: str | None = None, duration_s: float | None = None
    ) -> None:
        self.site = site
        self.scenario = scenario
        self.tz = ZoneInfo(site.info.timezone)
        rng = np.random.default_rng(scenario.seed)
        self.model = FlowModel(site, scenario, rng)
        self.window = resolve_window(scenario, self.tz, start, duration_s)
        self.bank = SensorBank(site, self.model.zone_ids, rng, self.model.t0)
        self.bank.seed_totals(self.model.expected_since_midnight(self.model.t0), self.model.occupancy)
        self.injector = FaultInjector(site, scenario, self.window)
        meta: dict[str, Any] = {
            "scenario": scenario.name,
            "site": site.info.id,
            "seed": scenario.seed,
            "step_s": scenario.step_s,
            "day_type": scenario.day_type,
        }
        self.truth = TruthRecorder(site, self.model.zone_ids, self.window, meta)

    def _next_midnight(self, t: float) -> float:
        day = dt.datetime.fromtimestamp(t, self.tz).date() + dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(0), self.tz).timestamp()

    def messages(self) -> Iterator[SimMessage]:
        w0, w1 = self.window
        model, bank = self.model, self.bank
        heap: list[tuple[float, int, SimMessage]] = []
        order = itertools.count()
        midnight = self._next_midnight(model.t)
        announced = False
        while model.t < w1 - 1e-9:
            arrivals, departures = model.step()
            t = model.t
            bank.observe(arrivals, departures)
            self.truth.step(t, arrivals, departures, model.occupancy)
            readings = bank.report(t, model.occupancy)
            if t >= midnight - 1e-9:
                bank.midnight()
                midnight = self._next_midnight(t + 1.0)
            if not announced and t >= w0:
                # Sensors say they are online when publishing begins.
                announced = True
                stamp = dt.datetime.fromtimestamp(t, self.tz)
                readings = [
                    Emitted(t, s.id, "status", StatusMsg(sensor=s.id, ts=stamp, seq=0, state="online"))
                    for s in self.site.sensors.values()
                ] + readings
            for e in readings:
                for m in self.injector.apply(e):
                    heapq.heappush(heap, (m.sim_ts, next(order), m))
            while heap and heap[0][0] <= t:
                yield from self._deliver(heapq.heappop(heap)[2])
        for m in self.injector.flush():
            heapq.heappush(heap, (m.sim_ts, next(order), m))
        while heap:
            yield from self._deliver(heapq.heappop(heap)[2])
        self.truth.finish()

    def _deliver(self, m: SimMessage) -> Iterator[SimMessage]:
        if self.window[0] <= m.sim_ts < self.window[1] or (m.sim_ts == self.window[1] == self.model.t1):
            self.truth.published(m)
            yield m

    def write_truth(self, out_dir: Path) -> dict[str, Any]:
        return self.truth.write(out_dir, self.injector.suppressed)

    def summary(self) -> dict[str, Any]:
        return self.truth.summary(self.injector.suppressed)


def iter_messages(
    site: Site, scenario: Scenario, start: str | None = None, duration_s: float | None = None
) -> Iterator[SimMessage]:
    """Every message of a scenario run (or of its window from `start` for `duration_s`), in delivery order."""
    yield from Simulation(site, scenario, start, duration_s).messages()
