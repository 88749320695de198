"""Ground truth of a run: true occupancy, the windows where zones were over capacity, and what was sent.

Written next to a run: truth_occupancy.csv (ts, zone, occupancy per minute), truth_windows.csv (zone, start,
crossing, end, peak, peak_ts, closed) and truth_summary.json. A window opens at `crossing`, the first time
occupancy >= capacity; `start` is when the build-up began (occupancy last rose above the zone's level IV
share of capacity); it ends when occupancy falls below capacity × (1 - hysteresis), so noise around the
capacity line does not split one event into many. `closed` is false if the run ended inside the window.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from domain.site import Site
from sim.model import IntArray
from sim.wire import SimMessage

TRUTH_EVERY_S = 60.0


@dataclass(frozen=True)
class Window:
    zone: str
    start: float
    crossing: float
    end: float
    peak: int
    peak_ts: float
    closed: bool


class TruthRecorder:
    def __init__(
        self, site: Site, zone_ids: list[str], window: tuple[float, float], meta: dict[str, Any]
    ) -> None:
        self.site = site
        self.tz = ZoneInfo(site.info.timezone)
        self.zone_ids = zone_ids
        self.window = window
        self.meta = meta
        n = len(zone_ids)
        self.capacity = np.array([site.zones[z].capacity for z in zone_ids], dtype=np.float64)
        self.warn = np.array([site.thresholds_for(z).share[0] for z in zone_ids]) * self.capacity
        self.release = np.array([1.0 - site.thresholds_for(z).hysteresis for z in zone_ids]) * self.capacity
        self.rise = np.full(n, math.nan)  # when occupancy last rose above the level IV line
        self.crossing = np.full(n, math.nan)  # open window: when it crossed capacity
        self.peak = np.zeros(n, dtype=np.int64)
        self.peak_ts = np.zeros(n)
        self.windows: list[Window] = []
        self.samples: list[tuple[float, IntArray]] = []
        self.arrivals = np.zeros(n, dtype=np.int64)
        self.departures = np.zeros(n, dtype=np.int64)
        self.max_occupancy = np.zeros(n, dtype=np.int64)
        self.by_kind: Counter[str] = Counter()
        self.by_fault: Counter[str] = Counter()
        self.malformed = 0
        self.sent = 0
        self.last_t = window[0]
        self.finished = False

    def step(self, t: float, arrivals: IntArray, departures: IntArray, occ: IntArray) -> None:
        """Called at the end of every model step (before and during the published window)."""
        occf = occ.astype(np.float64)
        above_warn = occf >= self.warn
        self.rise = np.where(above_warn, np.where(np.isnan(self.rise), t, self.rise), math.nan)
        is_open = ~np.isnan(self.crossing)
        new = ~is_open & (occf >= self.capacity)
        self.crossing = np.where(new, t, self.crossing)
        is_open |= new
        higher = is_open & ((occ > self.peak) | new)
        self.peak = np.where(higher, occ, self.peak)
        self.peak_ts = np.where(higher, t, self.peak_ts)
        closing = is_open & (occf < self.release)
        for i in np.nonzero(closing)[0].tolist():
            self._close(i, t, closed=True)
        w0, w1 = self.window
        if w0 < t <= w1:
            self.arrivals += arrivals
            self.departures += departures
            self.max_occupancy = np.maximum(self.max_occupancy, occ)
            self.last_t = t
        if w0 <= t <= w1 and abs(math.remainder(t, TRUTH_EVERY_S)) < 1e-6:
            self.samples.append((t, occ.copy()))

    def _close(self, i: int, t: float, closed: bool) -> None:
        start = self.rise[i] if not math.isnan(self.rise[i]) else self.crossing[i]
        w = Window(
            self.zone_ids[i],
            float(start),
            float(self.crossing[i]),
            t,
            int(self.peak[i]),
            float(self.peak_ts[i]),
            closed,
        )
        self.crossing[i] = math.nan
        # Only windows that overlap the published part of the run are ground truth for it.
        if w.end >= self.window[0] and w.crossing <= self.window[1]:
            self.windows.append(w)

    def finish(self) -> None:
        """Close windows still open (the run ended, or was stopped, above capacity). Idempotent."""
        if self.finished:
            return
        self.finished = True
        for i in np.nonzero(~np.isnan(self.crossing))[0].tolist():
            self._close(i, self.last_t, closed=False)

    def published(self, m: SimMessage) -> None:
        self.sent += 1
        self.by_kind[m.kind] += 1
        self.malformed += m.malformed
        for f in m.faults:
            self.by_fault[f] += 1

    def iso(self, ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, self.tz).isoformat()

    def summary(self, suppressed: Counter[str]) -> dict[str, Any]:
        faults = Counter(self.by_fault)
        faults["duplicate"] = faults["duplicate"] // 2  # both copies are tagged; count the extra one
        faults.update(suppressed)
        return {
            **self.meta,
            "window": {"start": self.iso(self.window[0]), "end": self.iso(self.window[1])},
            "messages": self.sent,
            "messages_by_kind": dict(sorted(self.by_kind.items())),
            "malformed": self.malformed,
            "duplicates": faults["duplicate"],
            # Messages a fault shaped or suppressed (a duplicate counts once: the extra copy).
            "faults_by_type": {k: v for k, v in sorted(faults.items()) if v},
            "suppressed_by_type": dict(sorted(suppressed.items())),  # readings never sent (dropout, reboot)
            "arrivals_by_zone": dict(zip(self.zone_ids, self.arrivals.tolist(), strict=True)),
            "departures_by_zone": dict(zip(self.zone_ids, self.departures.tolist(), strict=True)),
            "max_occupancy_by_zone": dict(zip(self.zone_ids, self.max_occupancy.tolist(), strict=True)),
            "over_capacity_windows": len(self.windows),
        }

    def write(self, out_dir: Path, suppressed: Counter[str]) -> dict[str, Any]:
        self.finish()
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "truth_occupancy.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ts", "zone", "occupancy"])
            for t, occ in self.samples:
                stamp = self.iso(t)
                w.writerows((stamp, z, int(o)) for z, o in zip(self.zone_ids, occ.tolist(), strict=True))
        with open(out_dir / "truth_windows.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["zone", "start", "crossing", "end", "peak", "peak_ts", "closed"])
            for win in sorted(self.windows, key=lambda x: (x.crossing, x.zone)):
                w.writerow(
                    [
                        win.zone,
                        self.iso(win.start),
                        self.iso(win.crossing),
                        self.iso(win.end),
                        win.peak,
                        self.iso(win.peak_ts),
                        str(win.closed).lower(),
                    ]
                )
        summary = self.summary(suppressed)
        (out_dir / "truth_summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        return summary
