"""What a person reads after a backtest: what was read, what was skipped and why, alerts, label metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from detect.backtest.labels import Evaluation, SeriesMetrics
from detect.backtest.reader import MAX_INTERVAL_S, MIN_INTERVAL_S, Recording, SeriesInfo
from detect.backtest.runner import Alert, Result

MAX_SERIES_LINES = 40  # beyond this, the busiest series are listed and the rest summed up


def interval_text(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def input_summary(rec: Recording, res: Result, rows_written: int) -> list[str]:
    out = [
        f"input {rec.path}: format {rec.format}, naive times read as {rec.tz}",
        f"  {rec.data_lines:,} data lines -> {rec.rows:,} rows in {len(rec.names)} series -> "
        f"{rows_written:,} output rows",
        f"  skipped: {rec.blank_lines:,} blank lines, {rec.empty_values:,} empty values, "
        f"{rec.duplicates:,} duplicate timestamps (first kept), {rec.bad_rows:,} bad rows",
    ]
    for b in rec.bad_examples:
        out.append(f"    bad row at line {b.line}: {b.reason}")
    if rec.bad_rows > len(rec.bad_examples):
        out.append(f"    ... and {rec.bad_rows - len(rec.bad_examples):,} more bad rows")
    if rec.unknown_sensors:
        shown = ", ".join(rec.unknown_sensors[:10]) + (" ..." if len(rec.unknown_sensors) > 10 else "")
        out.append(f"  {len(rec.unknown_sensors)} sensors not in the site, kept as series of their own: {shown}")
    if rec.total_first_rows:
        out.append(
            f"  running totals (site sensors in mode total) turned into counts per step: "
            f"{rec.total_first_rows:,} first rows dropped, {rec.total_resets:,} resets counted from zero"
        )
    if res.nonfinite_scores:
        out.append(f"  detector returned {res.nonfinite_scores:,} non-finite scores (written as 0 / clipped)")
    return out


def series_table(rec: Recording, alerts: Sequence[Alert]) -> list[str]:
    per = Counter(a.series for a in alerts)
    infos = [i for i in rec.info]
    shown = (
        infos
        if len(infos) <= MAX_SERIES_LINES
        else sorted(infos, key=lambda i: (-per[i.name], i.name))[:MAX_SERIES_LINES]
    )
    w = max([len("series")] + [len(i.name) for i in shown])
    out = [
        f"  {'series':<{w}}  {'rows':>9}  {'interval':>8}  {'gaps':>5}  {'missing':>8}  {'empty':>6}  "
        f"{'dups':>5}  {'alerts':>6}"
    ]
    for i in shown:
        out.append(
            f"  {i.name:<{w}}  {i.rows:>9,}  {_interval(i):>8}  {i.gaps:>5,}  {i.missing_steps:>8,}  "
            f"{i.empty:>6,}  {i.duplicates:>5,}  {per[i.name]:>6,}"
        )
    if len(infos) > len(shown):
        out.append(f"  ... {len(infos) - len(shown)} more series (fewest alerts), all in the result file")
        kinds = Counter(_interval(i) for i in infos)
        out.append("  intervals: " + ", ".join(f"{k} x {n}" for k, n in kinds.most_common()))
    odd = [i.name for i in infos if i.rows and i.interval_known and not i.interval_in_range]
    if odd:
        out.append(
            f"  note: interval outside {MIN_INTERVAL_S:g} s..{MAX_INTERVAL_S / 3600:g} h for "
            f"{', '.join(odd[:10])}; results may not mean much"
        )
    single = [i.name for i in infos if i.rows == 1]
    if single:
        out.append(f"  note: a single row in {', '.join(single[:10])}; interval assumed 1 min")
    return out


def _interval(i: SeriesInfo) -> str:
    return interval_text(i.interval_s) if i.interval_known else "?"


def alert_lines(alerts: Sequence[Alert], fmt_time: dict[float, str], limit: int = 20) -> list[str]:
    out = [f"alerts: {len(alerts):,}"]
    for a in alerts[:limit]:
        out.append(
            f"  {a.id}: {fmt_time[a.start]} .. {fmt_time[a.end]}, peak {a.peak_score:.3f} "
            f"({a.peak_level.label}), {a.flagged_rows} flagged rows"
        )
    if len(alerts) > limit:
        out.append(f"  ... and {len(alerts) - limit:,} more (the alert column of the result file)")
    return out


def _f(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def metrics_lines(ev: Evaluation, lead_min: float) -> list[str]:
    out = [f"labels: {ev.overall.windows} windows scored, lead zone {lead_min:g} min before each window"]
    for w in ev.unknown_series:
        out.append(f"  ignored window at line {w.line}: series {w.series!r} is not in the input")
    for name, w in ev.without_data:
        out.append(f"  not scored: window at line {w.line} has no data of {name} inside")
    rows: list[SeriesMetrics] = [m for m in ev.per_series if m.windows or m.alerts] + [ev.overall]
    wn = max(len(m.series) for m in rows)
    out.append(
        f"  {'series':<{wn}}  {'windows':>7}  {'found':>5}  {'recall':>6}  {'alerts':>6}  {'prec.':>5}  "
        f"{'lead min':>8}  {'to cross':>8}  {'FA':>4}  {'FA/day':>6}"
    )
    for m in rows:
        out.append(
            f"  {m.series:<{wn}}  {m.windows:>7}  {m.detected:>5}  {_f(m.recall):>6}  {m.alerts:>6}  "
            f"{_f(m.precision):>5}  {_f(m.median_lead_min, '.1f'):>8}  "
            f"{_f(m.median_crossing_lead_min, '.1f'):>8}  "
            f"{m.false_alarms:>4}  {_f(m.fa_per_day):>6}"
        )
    o = ev.overall
    if o.crossings:
        out.append(f"  capacity crossings warned before they happened: {o.warned_before_crossing}/{o.crossings}")
    return out


def metrics_kv(ev: Evaluation) -> str:
    """One machine-readable line, like benchmarks/detection.py's."""
    o = ev.overall
    parts = {
        "windows": o.windows,
        "detected": o.detected,
        "recall": _f(o.recall, ".3f"),
        "alerts": o.alerts,
        "precision": _f(o.precision, ".3f"),
        "median_lead_min": _f(o.median_lead_min, ".1f"),
        "median_crossing_lead_min": _f(o.median_crossing_lead_min, ".1f"),
        "false_alarms": o.false_alarms,
        "fa_per_series_day": _f(o.fa_per_day, ".3f"),
    }
    return " ".join(f"{k}={v}" for k, v in parts.items())
