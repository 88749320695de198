"""Run one detector per series over a Recording, as fast as pure Python allows, then derive levels and alerts.

The per-row loop is the only Python-level work: every input to it (time, value per minute, slot, day type,
expectation) is precomputed as arrays and handed over in chunks as lists, and the loop body is the `Obs`
tuple plus `learn_guarded` (score, then learn only what looks normal). Levels and alerts come afterwards,
vectorised over the scores.

Levels from the score, as the live SurgeMonitor grades them: below the decision threshold (0.9) "normal";
then IV blue, and III yellow from 0.97. A score alone never goes above III: it says people are coming, not
that the place is full; capacity, density and the time-to-capacity forecast decide II and I.
An alert opens at a flagged row (score ≥ threshold), stays open while rows
are flagged, and closes at the first row `close_after` intervals or more after the last flagged one (so data
gaps count as quiet time, and a flag after a long gap opens a new alert).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detect.backtest.calendar import DAY_TYPES, expected_per_min, slots_and_day_types
from detect.backtest.reader import Recording
from detect.base import Decision, Detector, Obs, learn_guarded
from domain.levels import Level
from domain.profile import CapacityProfile
from domain.site import Site

CHUNK = 16_384  # rows handed to the loop at a time; the progress callback runs once per chunk
LEVEL_BANDS: tuple[tuple[float, Level], ...] = ((0.97, Level.III),)
LEVEL_LABELS: tuple[str, ...] = tuple(lv.label for lv in Level)


@dataclass(frozen=True)
class Alert:
    series: str
    id: str  # "<series>#<n>", n counting from 1 within the series
    start: float  # first flagged row, epoch seconds
    last_flagged: float
    end: float  # last row carrying the alert
    peak_score: float
    peak_level: Level
    flagged_rows: int


@dataclass
class Result:
    """Per row of the Recording (same order): score, level, alert index (-1 = none)."""

    score: npt.NDArray[np.float64]
    level: npt.NDArray[np.int64]
    alert: npt.NDArray[np.int64]
    alerts: list[Alert]
    nonfinite_scores: int  # NaN/inf a detector returned, written as 0 / clipped


def levels_of(score: npt.NDArray[np.float64], decision: Decision) -> npt.NDArray[np.int64]:
    lv = np.where(score >= decision.threshold, int(Level.IV), int(Level.NORMAL))
    for floor, level in reversed(LEVEL_BANDS):
        lv = np.where(score >= max(floor, decision.threshold), int(level), lv)
    return lv.astype(np.int64)


def run_backtest(
    rec: Recording,
    factory: Callable[[], Detector],
    *,
    site: Site | None = None,
    decision: Decision | None = None,
    close_after: int = 3,
    progress: Callable[[int], None] | None = None,
) -> Result:
    """Score every row of every series with a fresh detector per series."""
    dec = decision or Decision()
    profile = CapacityProfile(site) if site is not None else None
    with_nye = profile is None or "nye" in profile.day_factor
    slot, kind = slots_and_day_types(rec.ts, rec.tz, with_nye=with_nye)
    day_names = np.array(DAY_TYPES, dtype=object)
    scores = np.empty(rec.rows, dtype=np.float64)
    for i, info in enumerate(rec.info):
        a, b = int(rec.bounds[i]), int(rec.bounds[i + 1])
        if a == b:
            continue
        per_min = rec.value[a:b] * (60.0 / info.interval_s)
        expected = None
        if profile is not None and info.zone is not None and info.zone in profile.zone_pos:
            expected = expected_per_min(profile, info.zone, slot[a:b], kind[a:b])
        scores[a:b] = _score_series(
            factory(), dec, rec.ts[a:b], per_min, slot[a:b], day_names[kind[a:b]], expected, progress
        )
    bad = ~np.isfinite(scores)
    scores = np.clip(np.where(np.isnan(scores), 0.0, scores), 0.0, 1.0)
    level = levels_of(scores, dec)
    alert_idx, alerts = _alerts(rec, scores, level, dec, close_after)
    return Result(scores, level, alert_idx, alerts, int(bad.sum()))


def _score_series(
    det: Detector,
    dec: Decision,
    ts: npt.NDArray[np.float64],
    per_min: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int64],
    day: npt.NDArray[np.object_],
    expected: npt.NDArray[np.float64] | None,
    progress: Callable[[int], None] | None,
) -> list[float]:
    out: list[float] = []
    extend, make, guard = out.extend, Obs._make, learn_guarded
    for lo in range(0, len(ts), CHUNK):
        hi = lo + CHUNK
        exp: list[float | None] | list[None]
        exp = [None] * len(ts[lo:hi]) if expected is None else _none_for_nan(expected[lo:hi])
        rows = zip(
            ts[lo:hi].tolist(),
            per_min[lo:hi].tolist(),
            slot[lo:hi].tolist(),
            day[lo:hi].tolist(),
            exp,
            strict=True,
        )
        extend([guard(det, x, dec) for x in map(make, rows)])
        if progress is not None:
            progress(len(ts[lo:hi]))
    return out


def _none_for_nan(a: npt.NDArray[np.float64]) -> list[float | None]:
    return [None if v != v else v for v in a.tolist()]


def _alerts(
    rec: Recording,
    score: npt.NDArray[np.float64],
    level: npt.NDArray[np.int64],
    dec: Decision,
    close_after: int,
) -> tuple[npt.NDArray[np.int64], list[Alert]]:
    idx = np.full(rec.rows, -1, dtype=np.int64)
    alerts: list[Alert] = []
    for i, info in enumerate(rec.info):
        a, b = int(rec.bounds[i]), int(rec.bounds[i + 1])
        ts = rec.ts[a:b]
        flagged = np.flatnonzero(score[a:b] >= dec.threshold)
        if not len(flagged):
            continue
        quiet = close_after * info.interval_s
        ft = ts[flagged]
        # A flag opens a new alert when the previous flag is `close_after` intervals or more before it.
        new = np.concatenate(([True], np.diff(ft) >= quiet))
        group = np.cumsum(new) - 1
        firsts = flagged[new]
        lasts = flagged[np.concatenate((np.flatnonzero(new)[1:] - 1, [len(flagged) - 1]))]
        counts = np.bincount(group)
        for n, (f, last) in enumerate(zip(firsts.tolist(), lasts.tolist(), strict=True)):
            stop = int(np.searchsorted(ts, ts[last] + quiet, side="left"))  # first row that closes it
            idx[a + f : a + stop] = len(alerts)
            seg = score[a + f : a + last + 1]
            alerts.append(
                Alert(
                    series=info.name,
                    id=f"{info.name}#{n + 1}",
                    start=float(ts[f]),
                    last_flagged=float(ts[last]),
                    end=float(ts[stop - 1]),
                    peak_score=float(seg.max()),
                    peak_level=Level(int(level[a + f : a + last + 1].max())),
                    flagged_rows=int(counts[n]),
                )
            )
    return idx, alerts
