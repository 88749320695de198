"""Response metrics: how fast each grid and each officer acknowledged and resolved their alerts.

For `GET /api/metrics/response` and the dashboard's response table. Definitions (docs/audit.md):

- time to acknowledge: from `opened_at` to the first acknowledgement known (`acknowledged_at`, or the first
  "acknowledged" change in the history, whichever is earlier); the officer is whoever gave it.
- time to resolve: from `opened_at` to `resolved_at`.
- acknowledged within target: acknowledged within the ack target of the alert's peak level. An alert counts
  once its target has come due: it was acknowledged, or it stayed unacknowledged past the target (open now,
  or resolved after the target). One that resolved unacknowledged before its target, or is open and still
  within it, is not judged yet.
- resolved within target: the same with the resolve target; open alerts past the target count as misses.
- unacknowledged past target: open, never acknowledged, and `now - opened_at` is more than the ack target.

Targets by peak level (ack, resolve) default to I red 2 min / 30 min, II orange 5 / 60, III yellow 10 / 120,
IV blue 20 / 240. Crowd managers need about 15 minutes to act (DESIGN.md section 3; the 2014 Bund
counter-flow formed in about ten), so a red alert must reach a person within two minutes to leave them that
time, and an orange one within five; yellow and blue give warning earlier and can wait longer.

>>> from domain.values import Alert
>>> def alert(i: str, ack: float | None) -> Alert:
...     return Alert(id=i, zone="z", grid="g1", level=Level.I, peak_level=Level.I, cause="capacity",
...                  state="acknowledged" if ack else "raised", opened_at=0.0, updated_at=0.0,
...                  acknowledged_at=ack, acknowledged_by="ana" if ack else "")
>>> m = response_metrics([alert("a", 60.0), alert("b", 200.0), alert("c", None)], now=1000.0)
>>> o = m["overall"]
>>> o["ack_median_s"], o["ack_within_target"], o["unacknowledged_past_target"]
(130.0, 0.333, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from domain.levels import GRADED, Level
from domain.values import Alert

DEFAULT_TARGETS: Mapping[Level, tuple[float, float]] = {
    Level.I: (120.0, 1800.0),
    Level.II: (300.0, 3600.0),
    Level.III: (600.0, 7200.0),
    Level.IV: (1200.0, 14400.0),
}
"""(ack_s, resolve_s) by peak level."""


class _Facts:
    """What one alert contributes: its times and whether it met its targets (None: not judged yet)."""

    __slots__ = ("ack_met", "ack_s", "grid", "open", "person", "resolve_met", "resolve_s", "unacked_late")

    def __init__(self, a: Alert, targets: Mapping[Level, tuple[float, float]], now: float) -> None:
        self.grid = a.grid
        self.open = a.open
        ack_at, self.person = _first_ack(a)
        self.ack_s = None if ack_at is None else max(0.0, ack_at - a.opened_at)
        self.resolve_s = None if a.resolved_at is None else max(0.0, a.resolved_at - a.opened_at)
        self.ack_met: bool | None = None
        self.resolve_met: bool | None = None
        self.unacked_late = False
        target = targets.get(a.peak_level)
        if target is None:  # a peak level with no target (NORMAL): timed, not judged
            return
        ack_target, resolve_target = target
        # How long the alert stood without the step being done: until now if open, else until it resolved.
        stood = (now if a.resolved_at is None else a.resolved_at) - a.opened_at
        if self.ack_s is not None:
            self.ack_met = self.ack_s <= ack_target
        elif stood > ack_target:
            self.ack_met = False
            self.unacked_late = self.open
        if self.resolve_s is not None:
            self.resolve_met = self.resolve_s <= resolve_target
        elif now - a.opened_at > resolve_target:
            self.resolve_met = False


def _first_ack(a: Alert) -> tuple[float | None, str]:
    """Time and person of the earliest acknowledgement known (history is capped; acknowledged_at may be later)."""
    best: tuple[float | None, str] = (a.acknowledged_at, a.acknowledged_by)
    for c in a.history:
        # Changes written before actions were recorded carry action "" and state "acknowledged".
        if (c.action == "acknowledged" or (c.action == "" and c.state == "acknowledged")) and (
            best[0] is None or c.ts < best[0]
        ):
            best = (c.ts, c.by)
    return best


def response_metrics(
    alerts: Sequence[Alert], *, targets: Mapping[Level, tuple[float, float]] | None = None, now: float
) -> dict[str, Any]:
    """Counts, median and 90th percentile times and shares within target: overall, by grid, by officer.

    `targets` overrides DEFAULT_TARGETS level by level. Rows are sorted worst first (lowest share acknowledged
    within target, then resolved within target, then most unacknowledged past target); rows with nothing
    judged yet come last. Times are seconds to 0.1 s, shares fractions to 0.001, None when there is no data.
    """
    merged = _check_targets(targets)
    facts = [_Facts(a, merged, now) for a in alerts]
    by_grid: dict[str, list[_Facts]] = {}
    by_person: dict[str, list[_Facts]] = {}
    for f in facts:
        by_grid.setdefault(f.grid, []).append(f)
        if f.person:
            by_person.setdefault(f.person, []).append(f)
    return {
        "now": now,
        "targets": {
            lv.name: {"label": lv.label, "ack_s": merged[lv][0], "resolve_s": merged[lv][1]}
            for lv in reversed(GRADED)
            if lv in merged
        },
        "overall": _row(facts),
        "by_grid": _table("grid", by_grid),
        "by_officer": _table("person", by_person),
    }


def _check_targets(targets: Mapping[Level, tuple[float, float]] | None) -> dict[Level, tuple[float, float]]:
    merged = dict(DEFAULT_TARGETS)
    for lv, pair in (targets or {}).items():
        if not isinstance(lv, Level):
            raise ValueError(f"response targets: key {lv!r} is not a Level; use Level.I, Level.II, Level.III, Level.IV")
        try:
            ack_s, resolve_s = (float(x) for x in pair)
        except (TypeError, ValueError) as e:
            raise ValueError(f"response targets for {lv.label}: give (ack_s, resolve_s), got {pair!r}") from e
        if not (math.isfinite(ack_s) and math.isfinite(resolve_s) and ack_s > 0 and resolve_s > 0):
            raise ValueError(f"response targets for {lv.label}: seconds must be positive numbers, got {pair!r}")
        merged[lv] = (ack_s, resolve_s)
    return merged


def _table(name: str, groups: Mapping[str, list[_Facts]]) -> list[dict[str, Any]]:
    rows = [{name: key, **_row(fs)} for key, fs in groups.items()]
    rows.sort(key=lambda r: (*_worst_first(r), str(r[name])))
    return rows


def _worst_first(row: Mapping[str, Any]) -> tuple[bool, float, bool, float, int]:
    ack, res = row["ack_within_target"], row["resolve_within_target"]
    return (ack is None, ack or 0.0, res is None, res or 0.0, -row["unacknowledged_past_target"])


def _row(facts: Sequence[_Facts]) -> dict[str, Any]:
    ack_times = sorted(f.ack_s for f in facts if f.ack_s is not None)
    resolve_times = sorted(f.resolve_s for f in facts if f.resolve_s is not None)
    return {
        "alerts": len(facts),
        "acknowledged": len(ack_times),
        "resolved": len(resolve_times),
        "open": sum(f.open for f in facts),
        "ack_median_s": _seconds(_quantile(ack_times, 0.5)),
        "ack_p90_s": _seconds(_quantile(ack_times, 0.9)),
        "resolve_median_s": _seconds(_quantile(resolve_times, 0.5)),
        "resolve_p90_s": _seconds(_quantile(resolve_times, 0.9)),
        **_share("ack", (f.ack_met for f in facts)),
        **_share("resolve", (f.resolve_met for f in facts)),
        "unacknowledged_past_target": sum(f.unacked_late for f in facts),
    }


def _share(prefix: str, met: Iterable[bool | None]) -> dict[str, Any]:
    judged = [m for m in met if m is not None]
    share = round(sum(judged) / len(judged), 3) if judged else None
    return {f"{prefix}_judged": len(judged), f"{prefix}_within_target": share}


def _quantile(xs: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); xs sorted. None for no data."""
    if not xs:
        return None
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _seconds(s: float | None) -> float | None:
    return None if s is None else round(s, 1)
