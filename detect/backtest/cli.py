"""`crowdflow backtest`: run a detector offline over a recorded CSV, write per-row scores, levels and alerts.

The lead wires `crowdflow backtest ...` to `main(argv)`; `python -m detect.backtest ...` runs it directly.
Exit codes: 0 done, 2 unusable input or options (header, file, labels, site, --strict and a bad row),
1 a detector failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np

from detect.backtest.labels import LEAD_S, evaluate, read_windows
from detect.backtest.output import iso_local, write_result
from detect.backtest.progress import Progress
from detect.backtest.reader import InputError, read_input
from detect.backtest.runner import run_backtest
from detect.backtest.summary import alert_lines, input_summary, metrics_kv, metrics_lines, series_table
from detect.base import Decision, Detector
from detect.registry import DEFAULT_SURGE, DETECTORS, default_surge_detector
from domain.loader import SiteError, load_site
from domain.site import Site

PROGRESS_MIN_ROWS = 100_000  # --progress auto shows the bar from this many rows

DESCRIPTION = """\
Run a detector offline over recorded data and write one row per input timestamp and series:
timestamp,series,value,score,level,alert.

Input formats (the header decides):
  timestamp,value               one series, named after the file
  timestamp,sensor_id,count     one series per sensor, or per zone with --site (sensors summed)
  timestamp,sensor_id,in,out    as above; the value is `in`, the arrivals

Timestamps: epoch seconds (milliseconds above 1e11), ISO 8601 with an offset (Z, +08:00), or naive local
time read in --tz (default: the site's timezone, else Asia/Shanghai). Intervals of 1 s to 1 h; each
series' interval is the median step between its rows.

Bad input rule: a file whose header is not one of the formats above stops the run (exit 2, naming line 1).
Individual bad rows (unreadable timestamp, not a number, empty sensor_id, wrong number of fields) are
skipped, counted and the first few listed with their line numbers; --strict stops at them instead (exit 2).
Empty values are skipped and counted (a gap, never a zero); of duplicate timestamps the first is kept; gaps
are reported, not filled. A file with no usable row at all stops the run (exit 2).

Each series gets a fresh detector. It sees the value per minute (value x 60 / interval), the 15-minute slot
and day type of the local time and, for a site zone, the capacity profile's expectation; it learns only
from rows it does not flag. Level: normal below --threshold, then IV blue, III yellow at 0.97 (a score
alone never goes above III, as live). An alert opens at a flagged row and closes --close-after intervals after the last.

With --labels (series,start,end[,crossing]; empty series = every series) it prints recall, precision,
median lead time and false alarms per series-day.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crowdflow backtest",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT.csv", help="recorded data")
    p.add_argument("--out", required=True, metavar="RESULT.csv", help="where to write the per-row result")
    p.add_argument("--labels", metavar="WINDOWS.csv", help="surge windows: series,start,end[,crossing]")
    p.add_argument("--site", metavar="FILE", help="site file: maps sensors to zones, gives profile and timezone")
    p.add_argument(
        "--detector",
        choices=sorted(DETECTORS),
        help=f"detector to run (default: the default surge detector, now {DEFAULT_SURGE})",
    )
    p.add_argument("--tz", help="timezone of naive timestamps (default: the site's, else Asia/Shanghai)")
    p.add_argument(
        "--threshold",
        type=float,
        default=Decision().threshold,
        help="score at which a row is flagged (default %(default)s)",
    )
    p.add_argument(
        "--close-after",
        type=int,
        default=3,
        metavar="N",
        help="an alert closes N intervals after its last flagged row (default %(default)s)",
    )
    p.add_argument(
        "--lead-min",
        type=float,
        default=LEAD_S / 60,
        metavar="MIN",
        help="an alert up to MIN minutes before a window counts for it (default %(default)s)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first bad row (exit 2)")
    p.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help=f"progress bar on stderr (auto: from {PROGRESS_MIN_ROWS:,} rows)",
    )
    return p


def main(argv: list[str]) -> int:
    return run(argv, stdout=sys.stdout, stderr=sys.stderr, clock=time.monotonic)


def run(argv: list[str], *, stdout: TextIO, stderr: TextIO, clock: Callable[[], float]) -> int:
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the problem
        return int(e.code) if isinstance(e.code, int) else 2
    if not 0.0 < args.threshold <= 1.0 or args.close_after < 1 or args.lead_min < 0:
        print(
            "crowdflow backtest: --threshold must be in (0, 1], --close-after >= 1, --lead-min >= 0",
            file=stderr,
        )
        return 2
    site: Site | None = None
    try:
        if args.site:
            site = load_site(args.site)
        tz = args.tz or (site.info.timezone if site else "Asia/Shanghai")
        _check_tz(tz)
        t0 = clock()
        rec = read_input(args.input, site=site, tz=tz)
        if args.strict and rec.bad_rows:
            b = rec.bad_examples[0]
            raise InputError(rec.path, b.line, f"{b.reason} (--strict stops at bad rows)")
        windows = read_windows(args.labels, tz) if args.labels else []
    except (InputError, SiteError) as e:
        print(f"crowdflow backtest: {e}", file=stderr)
        return 2
    t_read = clock() - t0

    factory: Callable[[], Detector] = DETECTORS[args.detector] if args.detector else default_surge_detector
    if not args.detector:
        args.detector = default_surge_detector().name
    decision = Decision(threshold=args.threshold, protect=min(Decision().protect, args.threshold))
    show = args.progress == "always" or (args.progress == "auto" and rec.rows >= PROGRESS_MIN_ROWS)
    bar = Progress(rec.rows, stderr, clock=clock) if show else None
    t1 = clock()
    try:
        res = run_backtest(rec, factory, site=site, decision=decision, close_after=args.close_after, progress=bar)
    except Exception as e:  # a detector bug: say which, do not dump a half-written file
        print(f"crowdflow backtest: detector {args.detector} failed: {type(e).__name__}: {e}", file=stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    t_detect = clock() - t1
    t2 = clock()
    try:
        written = write_result(rec, res, args.out)
    except OSError as e:
        print(f"crowdflow backtest: cannot write {args.out}: {e.strerror}", file=stderr)
        return 2
    t_write = clock() - t2

    lines = input_summary(rec, res, written)
    lines.append(
        f"detector {args.detector}: flag at score >= {decision.threshold:g}, "
        f"alert closes after {args.close_after} quiet intervals"
    )
    lines += series_table(rec, res.alerts)
    starts = sorted({a.start for a in res.alerts} | {a.end for a in res.alerts})
    stamps = dict(zip(starts, iso_local(np.array(starts, dtype=float), rec.tz).tolist(), strict=True))
    lines += alert_lines(res.alerts, stamps)
    if args.labels:
        ev = evaluate(rec, res.alerts, windows, lead_s=args.lead_min * 60)
        lines += metrics_lines(ev, args.lead_min)
        lines.append(metrics_kv(ev))
    total = t_read + t_detect + t_write
    lines.append(
        f"wrote {args.out}; took {total:.2f} s (read {t_read:.2f}, detect {t_detect:.2f}, "
        f"write {t_write:.2f}), {rec.rows / max(total, 1e-9):,.0f} rows/s"
    )
    print("\n".join(lines), file=stdout)
    return 0


def _check_tz(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise InputError("--tz", None, f"unknown timezone {tz!r} (use an IANA name like Asia/Shanghai)") from e
