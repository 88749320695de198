"""Labelled windows (`series,start,end[,crossing]`) and how well the alerts match them.

* a window is detected when an alert is open at some time within [start - lead, end] (lead = 60 min);
* recall = detected windows / windows (windows with no data of their series inside are reported apart);
* precision = alerts open within some window's [start - lead, end] / all alerts;
* lead time = window start - start of the first such alert, in minutes (and crossing - that start, where a
  crossing time is given); negative when the alert came late;
* false alarms = alerts that match no window, per series-day of data (a series' span + one interval).

An empty `series` applies the window to every series. `zone` is accepted for `series` and other columns
are ignored, so sim/'s truth_windows.csv (zone,start,crossing,end,peak,...) can be used as is. Label files
are small and hand-made, so they are read strictly: any bad line stops the run with its line number.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from detect.backtest.reader import InputError, Recording
from detect.backtest.runner import Alert
from detect.backtest.timestamps import NAT, parse_timestamps

LEAD_S = 3600.0


@dataclass(frozen=True)
class Window:
    series: str | None  # None = every series
    start: float  # epoch seconds
    end: float
    crossing: float | None = None
    line: int = 0


def read_windows(path: str | Path, tz: str) -> list[Window]:
    p = str(path)
    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise InputError(p, None, f"cannot read the labels file ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise InputError(p, None, f"not UTF-8 text ({e.reason})") from e
    if not rows:
        raise InputError(p, 1, "empty labels file; the header must be series,start,end[,crossing]")
    head = [c.strip().lower() for c in rows[0]]
    if "series" not in head and "zone" in head:
        head[head.index("zone")] = "series"  # sim/'s truth_windows.csv names it zone
    if not {"series", "start", "end"} <= set(head) or len(set(head)) != len(head):
        raise InputError(p, 1, f"labels header {','.join(rows[0])!r} must be series,start,end[,crossing]")
    col = {c: i for i, c in enumerate(head)}
    body = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    for n, r in body:
        if len(r) != len(head):
            raise InputError(p, n, f"expected {len(head)} fields, saw {len(r)}")

    def times(name: str) -> npt.NDArray[np.int64]:
        if name not in col:
            return np.full(len(body), NAT, dtype=np.int64)
        text = pd.Series([r[col[name]] for _, r in body], dtype=object)
        ns, why = parse_timestamps(text, tz)
        for i, reason in sorted(why.items()):
            if name == "crossing" and reason == "empty timestamp":
                continue  # crossing is optional per row
            raise InputError(p, body[i][0], f"{name}: {reason}")
        return ns

    start, end, cross = times("start"), times("end"), times("crossing")
    out = []
    for i, (n, r) in enumerate(body):
        if end[i] < start[i]:
            raise InputError(p, n, "end is before start")
        series = r[col["series"]].strip() or None
        crossing = float(cross[i]) / 1e9 if cross[i] != NAT else None
        out.append(Window(series, float(start[i]) / 1e9, float(end[i]) / 1e9, crossing, n))
    return out


@dataclass
class SeriesMetrics:
    series: str
    days: float
    windows: int = 0
    detected: int = 0
    alerts: int = 0
    matched_alerts: int = 0
    crossings: int = 0
    warned_before_crossing: int = 0
    lead_min: list[float] = field(default_factory=list)
    crossing_lead_min: list[float] = field(default_factory=list)

    @property
    def false_alarms(self) -> int:
        return self.alerts - self.matched_alerts

    @property
    def recall(self) -> float | None:
        return self.detected / self.windows if self.windows else None

    @property
    def precision(self) -> float | None:
        return self.matched_alerts / self.alerts if self.alerts else None

    @property
    def median_lead_min(self) -> float | None:
        return statistics.median(self.lead_min) if self.lead_min else None

    @property
    def median_crossing_lead_min(self) -> float | None:
        return statistics.median(self.crossing_lead_min) if self.crossing_lead_min else None

    @property
    def fa_per_day(self) -> float | None:
        return self.false_alarms / self.days if self.days > 0 else None


@dataclass
class Evaluation:
    per_series: list[SeriesMetrics]
    overall: SeriesMetrics
    unknown_series: list[Window]  # windows naming a series the input does not have
    without_data: list[tuple[str, Window]]  # windows with no row of their series inside


def evaluate(rec: Recording, alerts: Sequence[Alert], windows: Sequence[Window], lead_s: float = LEAD_S) -> Evaluation:
    names = [info.name for info in rec.info if info.rows]
    by_series: dict[str, list[Window]] = {s: [] for s in names}
    unknown: list[Window] = []
    for w in windows:
        if w.series is None:
            for s in names:
                by_series[s].append(w)
        elif w.series in by_series:
            by_series[w.series].append(w)
        else:
            unknown.append(w)
    alerts_of: dict[str, list[Alert]] = {s: [] for s in names}
    for a in alerts:
        alerts_of.setdefault(a.series, []).append(a)

    per: list[SeriesMetrics] = []
    without: list[tuple[str, Window]] = []
    for i, info in enumerate(rec.info):
        if not info.rows:
            continue
        ts = rec.ts[rec.bounds[i] : rec.bounds[i + 1]]
        m = SeriesMetrics(info.name, (info.end - info.start + info.interval_s) / 86400.0)
        mine = alerts_of.get(info.name, [])
        m.alerts = len(mine)
        m.matched_alerts = sum(any(_overlaps(a, w, lead_s) for w in by_series[info.name]) for a in mine)
        for w in by_series[info.name]:
            if not np.any((ts >= w.start) & (ts <= w.end)):
                without.append((info.name, w))
                continue
            m.windows += 1
            hits = [a for a in mine if _overlaps(a, w, lead_s)]
            if w.crossing is not None:
                m.crossings += 1
            if not hits:
                continue
            m.detected += 1
            first = min(a.start for a in hits)
            m.lead_min.append((w.start - first) / 60.0)
            if w.crossing is not None:
                m.crossing_lead_min.append((w.crossing - first) / 60.0)
                m.warned_before_crossing += first < w.crossing
        per.append(m)

    total = SeriesMetrics("overall", sum(m.days for m in per))
    for m in per:
        total.windows += m.windows
        total.detected += m.detected
        total.alerts += m.alerts
        total.matched_alerts += m.matched_alerts
        total.crossings += m.crossings
        total.warned_before_crossing += m.warned_before_crossing
        total.lead_min += m.lead_min
        total.crossing_lead_min += m.crossing_lead_min
    return Evaluation(per, total, unknown, without)


def _overlaps(a: Alert, w: Window, lead_s: float) -> bool:
    return a.start <= w.end and a.end >= w.start - lead_s
