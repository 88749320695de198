"""Detection benchmark: the scenario suite through sim → ingest → detect, against the ground truth of sim.

For every scenario the simulator's messages go through `ingest.pipeline.Ingestor` and
`detect.engine.DetectionEngine` exactly as the service runs them (one tick every 10 s of simulated time);
the run's `truth_windows.csv` gives each capacity crossing. Measured per scenario and overall:

- crossings warned: an alert at II orange or worse (any cause) on the zone began before the crossing and was
  still on within `GAP_S` of it; lead = crossing - that alert episode's start. A crossing in the first
  `GRACE_S` of a published window (or before it) cannot be warned by anyone and is not counted.
- false alarms per zone-day on the surge-free runs (weekday, holiday, rainstorm): alert episodes on zones
  with no truth window in that run; an episode lasts until the level stays below II for `GAP_S`. Each
  surge-free run (06:00/08:00 to 23:00/23:30: the whole of a day's crowd) counts as one simulated day.
- the same for a static baseline, what a Prometheus rule would do: `share >= orange for 5m` on each zone's
  own II orange share (0.8 by default, 0.7 at the metro exits), from the same states' share.

The surge models are warmed first on surge-free days (other dates and seeds of weekday and holiday, driven
at full speed through the flow model as detect/surge/compare.py does), and every scenario starts from that
learned state, so one scenario does not teach the next.

Usage: .venv/bin/python benchmarks/detection.py [--quick] [--detector NAME] [--jobs N] [--warm-days N]
Progress goes to stderr; the tables and one final `key=value` line to stdout.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from detect.engine import DetectionEngine  # noqa: E402
from detect.registry import DEFAULT_SURGE, DETECTORS  # noqa: E402
from detect.surge.compare import Realism, run_day, same_kind_of_day, simulate  # noqa: E402
from detect.surge.monitor import SurgeMonitor  # noqa: E402
from domain.levels import Level  # noqa: E402
from domain.loader import load_site  # noqa: E402
from domain.profile import CapacityProfile  # noqa: E402
from domain.site import Site  # noqa: E402
from ingest.pipeline import Ingestor  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from sim.stream import Simulation  # noqa: E402

TICK_S = 10.0
GAP_S = 600.0  # an alert is one episode until its level stays below II this long
GRACE_S = 600.0  # crossings this soon after the published window opens are not measurable
BASELINE_FOR_S = 300.0  # the static rule's `for: 5m`
ALERT_LEVEL = Level.II


@dataclass(frozen=True)
class RunSpec:
    """One scenario run: a window of it (None = the whole scenario) and whether it is surge-free."""

    scenario: str
    surge_free: bool
    start: str | None = None
    duration_s: float | None = None
    buildup: bool = False  # an hours-long build-up: the 15-minute lead target applies

    @property
    def days(self) -> float:
        """Simulated days it stands for: a whole surge-free run is a day; a window, its share of 24 h."""
        return 1.0 if self.duration_s is None else self.duration_s / 86400.0

    @property
    def label(self) -> str:
        if self.start is None:
            return self.scenario
        return f"{self.scenario}@{self.start}+{(self.duration_s or 0) / 3600:g}h"


FULL_SUITE: tuple[RunSpec, ...] = (
    RunSpec("nye", False, buildup=True),
    RunSpec("surge_faults", False, buildup=True),
    RunSpec("gathering", False),
    RunSpec("metro_disruption", False),
    RunSpec("weekday", True),
    RunSpec("holiday", True),
    RunSpec("rainstorm", True),
)
QUICK_SUITE: tuple[RunSpec, ...] = (
    RunSpec("nye", False, start="19:00", duration_s=2.5 * 3600, buildup=True),
    RunSpec("gathering", False, start="19:15", duration_s=3600),
    RunSpec("holiday", True, start="18:00", duration_s=3600),
)


@dataclass
class Episodes:
    """Runs of alerting ticks merged when they are less than GAP_S apart: (start, last) each."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)  # what raised each episode

    def on(self, t: float, cause: str) -> None:
        if self.spans and t - self.spans[-1][1] < GAP_S:
            self.spans[-1] = (self.spans[-1][0], t)
        else:
            self.spans.append((t, t))
            self.causes.append(cause)

    def warning_for(self, crossing: float) -> tuple[float, str] | None:
        """(lead s, cause) of the episode that warned of a crossing: began before it, still on near it."""
        for (first, last), cause in zip(reversed(self.spans), reversed(self.causes), strict=True):
            if first < crossing and last >= crossing - GAP_S:
                return crossing - first, cause
        return None


@dataclass
class Crossing:
    zone: str
    crossing: float
    lead_min: float | None  # None: not warned before the crossing
    cause: str  # what raised the warning, or the worst signal before the crossing when missed
    baseline_lead_min: float | None


@dataclass
class RunResult:
    spec: RunSpec
    zones: int
    crossings: list[Crossing] = field(default_factory=list)
    unmeasurable: int = 0  # crossings before or right after the window opened
    false_alarms: int = 0  # surge-free runs: episodes on zones without a truth window
    baseline_false_alarms: int = 0
    off_target: int = 0  # surge runs: episodes on zones without a truth window (often legitimate)
    baseline_off_target: int = 0
    fa_zones: list[str] = field(default_factory=list)
    messages: int = 0
    seconds: float = 0.0


def warm_surge_state(site: Site, detector: str, days: int, realism: Realism | None) -> dict[str, Any]:
    """The surge models after `days` runs each of other weekday and holiday dates (never the evaluated ones)."""
    profile = CapacityProfile(site)
    mon = SurgeMonitor(site, profile, detector=detector)
    for k in range(1, days + 1):
        for name in ("weekday", "holiday"):
            run_day(mon, simulate(site, same_kind_of_day(load_scenario(name), profile, k), realism=realism))
    return mon.to_state()


def run_scenario(spec: RunSpec, detector: str, surge_state: dict[str, Any], site_path: str | None) -> RunResult:
    """One scenario through sim → ingest → detect; episodes per zone for the engine and the baseline."""
    t_start = time.perf_counter()
    site = load_site(site_path) if site_path else load_site()
    sc = load_scenario(spec.scenario)
    sim = Simulation(site, sc, spec.start, spec.duration_s)
    ingest = Ingestor(site)
    eng = DetectionEngine(site, surge_detector=detector)
    eng.surge.from_state(surge_state)
    orange = {z: site.thresholds_for(z).share[2] for z in site.zones}
    alerts = {z: Episodes() for z in site.zones}
    baseline = {z: Episodes() for z in site.zones}
    above_since: dict[str, float | None] = dict.fromkeys(site.zones)
    worst_before: dict[str, tuple[Level, str]] = {z: (Level.NORMAL, "") for z in site.zones}
    w0, w1 = sim.window
    next_tick = w0 + TICK_S
    n = 0

    def tick(now: float) -> None:
        for r in ingest.expire(now):
            eng.apply(r, now)
        states, detections = eng.tick(now)
        for d in detections:
            if d.level >= ALERT_LEVEL:
                alerts[d.zone].on(now, d.cause)
            if (d.level, d.cause) > (worst_before[d.zone][0], worst_before[d.zone][1]) and d.level > Level.NORMAL:
                worst_before[d.zone] = (d.level, d.cause)
        for s in states:
            if s.share >= orange[s.zone]:
                since = above_since[s.zone]
                if since is None:
                    above_since[s.zone] = since = now
                if now - since >= BASELINE_FOR_S:
                    baseline[s.zone].on(now, "static")
            else:
                above_since[s.zone] = None

    for m in sim.messages():
        while next_tick <= m.sim_ts:
            tick(next_tick)
            next_tick += TICK_S
        for r in ingest.feed(m.topic, m.payload, received_at=m.sim_ts):
            eng.apply(r, m.sim_ts)
        n += 1
    for r in ingest.flush():
        eng.apply(r, w1)
    while next_tick <= w1:
        tick(next_tick)
        next_tick += TICK_S

    with tempfile.TemporaryDirectory() as tmp:
        sim.write_truth(Path(tmp))
        windows = _read_windows(Path(tmp) / "truth_windows.csv")
    res = RunResult(spec, zones=len(site.zones), messages=n)
    truth_zones = {zone for zone, _ in windows}
    for zone, crossing in windows:
        if crossing < w0 + GRACE_S:
            res.unmeasurable += 1
            continue
        warned = alerts[zone].warning_for(crossing)
        base = baseline[zone].warning_for(crossing)
        res.crossings.append(
            Crossing(
                zone=zone,
                crossing=crossing,
                lead_min=warned[0] / 60.0 if warned else None,
                cause=warned[1] if warned else _worst_cause(alerts[zone], worst_before[zone], crossing),
                baseline_lead_min=base[0] / 60.0 if base else None,
            )
        )
    for zone in site.zones:
        if zone in truth_zones:
            continue
        if spec.surge_free:
            res.false_alarms += len(alerts[zone].spans)
            res.baseline_false_alarms += len(baseline[zone].spans)
            res.fa_zones += [f"{zone}({c})" for c in alerts[zone].causes]
        else:
            res.off_target += len(alerts[zone].spans)
            res.baseline_off_target += len(baseline[zone].spans)
    res.seconds = time.perf_counter() - t_start
    return res


def _worst_cause(ep: Episodes, worst: tuple[Level, str], crossing: float) -> str:
    """Why a crossing was missed: the alert came too late, or the worst the engine ever said on that zone."""
    late = [(first, c) for (first, _), c in zip(ep.spans, ep.causes, strict=True) if first >= crossing]
    if late:
        return f"late:{late[0][1]}+{(late[0][0] - crossing) / 60:.1f}min"
    level, cause = worst
    return f"never-orange:worst={level.label}/{cause or '-'}"


def _read_windows(path: Path) -> list[tuple[str, float]]:
    with open(path, newline="") as f:
        return [(row["zone"], dt.datetime.fromisoformat(row["crossing"]).timestamp()) for row in csv.DictReader(f)]


# ---- figures ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    crossings: int
    warned: int
    median_lead_min: float
    worst_lead_min: float
    false_alarms: int
    zone_days: float

    @property
    def fa_per_zone_day(self) -> float:
        return self.false_alarms / self.zone_days if self.zone_days else 0.0


def figures(results: Sequence[RunResult], *, baseline: bool) -> Figures:
    leads: list[float] = []
    crossings = 0
    for r in results:
        for c in r.crossings:
            crossings += 1
            lead = c.baseline_lead_min if baseline else c.lead_min
            if lead is not None:
                leads.append(lead)
    quiet = [r for r in results if r.spec.surge_free]
    return Figures(
        crossings=crossings,
        warned=len(leads),
        median_lead_min=statistics.median(leads) if leads else math.nan,
        worst_lead_min=min(leads) if leads else math.nan,
        false_alarms=sum(r.baseline_false_alarms if baseline else r.false_alarms for r in quiet),
        zone_days=sum(r.zones * r.spec.days for r in quiet),
    )


def _fmt_min(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f}"


def format_tables(results: Sequence[RunResult]) -> str:
    head = (
        f"{'scenario':<30} {'warned':>7} {'med lead':>8} {'worst':>6} {'FA/zd':>6} {'off':>4} │ "
        f"{'static':>7} {'med lead':>8} {'worst':>6} {'FA/zd':>6} {'off':>4}"
    )
    lines = ["engine (any cause ≥ II orange) │ static baseline: share ≥ orange for 5m", head, "─" * len(head)]
    for r in results:
        e, b = figures([r], baseline=False), figures([r], baseline=True)
        fa = f"{e.fa_per_zone_day:.2f}" if r.spec.surge_free else "-"
        bfa = f"{b.fa_per_zone_day:.2f}" if r.spec.surge_free else "-"
        lines.append(
            f"{r.spec.label:<30} {f'{e.warned}/{e.crossings}':>7} {_fmt_min(e.median_lead_min):>8} "
            f"{_fmt_min(e.worst_lead_min):>6} {fa:>6} {r.off_target:>4} │ "
            f"{f'{b.warned}/{b.crossings}':>7} {_fmt_min(b.median_lead_min):>8} "
            f"{_fmt_min(b.worst_lead_min):>6} {bfa:>6} {r.baseline_off_target:>4}"
        )
    lines.append("─" * len(head))
    lines.append("lead in minutes before the capacity crossing; FA/zd = false alarms per zone-day (surge-free runs);")
    lines.append("off = alert episodes on zones without a crossing in a surge run (plazas near capacity on NYE etc.)")
    details: list[str] = []
    for r in results:
        for c in r.crossings:
            lead = "MISSED" if c.lead_min is None else f"{c.lead_min:6.1f} min"
            blead = "missed" if c.baseline_lead_min is None else f"{c.baseline_lead_min:6.1f} min"
            details.append(f"  {r.spec.label:<30} {c.zone:<22} {lead:>10} ({c.cause})  static {blead}")
        if r.unmeasurable:
            details.append(f"  {r.spec.label:<30} {r.unmeasurable} crossing(s) before the window opened: not counted")
        if r.fa_zones:
            details.append(f"  {r.spec.label:<30} false alarms: {', '.join(r.fa_zones)}")
    return "\n".join([*lines, "", "per crossing (engine lead, cause of the warning; static lead):", *details])


def summary(results: Sequence[RunResult], seconds: float) -> dict[str, float | int]:
    e, b = figures(results, baseline=False), figures(results, baseline=True)
    build = [r for r in results if r.spec.buildup]
    eb, bb = figures(build, baseline=False), figures(build, baseline=True)

    def num(x: float) -> float:
        return round(x, 1) if not math.isnan(x) else -1.0  # -1: nothing to measure

    return {
        "crossings": e.crossings,
        "warned": e.warned,
        "median_lead_min": num(e.median_lead_min),
        "worst_lead_min": num(e.worst_lead_min),
        "buildup_median_lead_min": num(eb.median_lead_min),
        "false_alarms": e.false_alarms,
        "zone_days": round(e.zone_days, 2),
        "fa_per_zone_day": round(e.fa_per_zone_day, 3),
        "baseline_warned": b.warned,
        "baseline_median_lead_min": num(b.median_lead_min),
        "baseline_worst_lead_min": num(b.worst_lead_min),
        "baseline_buildup_median_lead_min": num(bb.median_lead_min),
        "baseline_false_alarms": b.false_alarms,
        "baseline_fa_per_zone_day": round(b.fa_per_zone_day, 3),
        "seconds": round(seconds, 1),
    }


def run(
    quick: bool = False,
    *,
    detector: str = DEFAULT_SURGE,
    jobs: int = 1,
    warm_days: int | None = None,
    site_path: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> dict[str, float | int]:
    """Run the suite (or its quick windows), print the tables and the key=value line; return the summary."""
    out = out or sys.stdout
    err = err or sys.stderr
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
    t0 = time.perf_counter()
    site = load_site(site_path) if site_path else load_site()
    days = warm_days if warm_days is not None else (1 if quick else 3)
    print(f"warming {detector} on {days} weekday + {days} holiday run(s)...", file=err, flush=True)
    state = warm_surge_state(site, detector, days, Realism())
    print(f"  warm in {time.perf_counter() - t0:.1f} s", file=err, flush=True)
    suite = QUICK_SUITE if quick else FULL_SUITE
    results: list[RunResult] = []
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_scenario, s, detector, state, site_path) for s in suite]
            for fut in futures:
                results.append(fut.result())
                _progress(results[-1], err)
    else:
        for s in suite:
            print(f"running {s.label}...", file=err, flush=True)
            results.append(run_scenario(s, detector, state, site_path))
            _progress(results[-1], err)
    figs = summary(results, time.perf_counter() - t0)
    print(f"detection benchmark, surge detector {detector}, tick {TICK_S:g} s\n", file=out)
    print(format_tables(results), file=out)
    e, b = figures(results, baseline=False), figures(results, baseline=True)
    print("\noverall", file=out)
    for name, f in (("engine", e), ("static", b)):
        print(
            f"  {name:<7} warned {f.warned}/{f.crossings}, median lead {_fmt_min(f.median_lead_min)} min, "
            f"worst {_fmt_min(f.worst_lead_min)} min, {f.false_alarms} false alarm(s) in {f.zone_days:g} "
            f"zone-days = {f.fa_per_zone_day:.3f}/zone-day",
            file=out,
        )
    print(" ".join(f"{k}={v}" for k, v in figs.items()), file=out, flush=True)
    return figs


def _progress(r: RunResult, err: TextIO) -> None:
    print(
        f"  {r.spec.label}: {r.messages:,} messages, {len(r.crossings)} crossing(s), {r.seconds:.1f} s",
        file=err,
        flush=True,
    )


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short windows of three scenarios (smoke test)")
    p.add_argument("--detector", default=DEFAULT_SURGE, choices=list(DETECTORS), help="surge detector")
    p.add_argument("--jobs", type=int, default=None, help="scenarios run in parallel (default: CPUs, 1 quick)")
    p.add_argument("--warm-days", type=int, default=None, help="warm-up runs per quiet day type")
    p.add_argument("--site", default=None, help="site file (default: Lujiazui)")
    p.add_argument(
        "--no-compare", action="store_true", help="skip the side-by-side comparison of the surge detectors"
    )
    a = p.parse_args(argv)
    jobs = a.jobs if a.jobs is not None else (1 if a.quick else max(1, min(os.cpu_count() or 1, 4)))
    if not (a.quick or a.no_compare):
        compare_detectors(site_path=a.site, out=out or sys.stdout, err=err or sys.stderr)
    run(a.quick, detector=a.detector, jobs=jobs, warm_days=a.warm_days, site_path=a.site, out=out, err=err)
    return 0


def compare_detectors(*, site_path: str | None, out: TextIO, err: TextIO) -> str:
    """Every registered surge detector alone on the same simulated days (learn on quiet days, count false
    alarms on others, lead before the NYE crossings); the winner is the default the engine runs."""
    from detect.surge.compare import compare_on_scenarios, format_table, pick_winner

    print("comparing surge detectors on simulated weekdays, holidays and New Year's Eve...", file=err, flush=True)
    results = compare_on_scenarios(load_site(site_path))
    winner = pick_winner(results)
    print("surge detectors alone (no capacity grading, no forecast), side by side:", file=out)
    print(format_table(results), file=out)
    print(f"winner: {winner} (all crossings warned, then fewest false alarms, then longest lead)\n", file=out)
    return winner


if __name__ == "__main__":
    raise SystemExit(main())
