"""Memory: RSS of `crowdflow serve` at 1,000 / 10,000 / 50,000 sensors over 8 hours of simulated time (past
the embedded store's 6-hour window and across midnight), whether it levels off, and the detection models'
memory per zone and per sensor, per component and per surge detector.

Service RSS: for each size, the Lujiazui site scaled to N sensors (benchmarks/scaled_site.py, zones unchanged)
runs in a `crowdflow serve` child process with the simulated clock (service.clock = "sim"). --hours (8) of
valid readings (each sensor at its reporting interval, from 20:00 on a Tuesday to 04:00 on Wednesday, with
the simulator's clock message every simulated second) are published at QoS 1 as fast as the service takes
them (at most LEAD_S of simulated time ahead of it, so no backlog builds up at the broker); after --max-wall
seconds (900) publishing stops and the table says how far it got. The service ticks every --tick (30)
simulated seconds rather than its default 5: what a tick keeps (the store's slots, the hub's resume window,
the models' per-zone state) is bounded by time or by count, not by how often it runs, and at 50,000 sensors
960 ticks instead of 5,760 is the difference between minutes and an hour. VmRSS (/proc/<pid>/status) is
sampled every half second against the service's simulated time (its last tick, /api/district).

Printed per size: RSS at the start (subscribed, no data yet), after 1 simulated hour, after 6 (the store's
window full), just after midnight, at the end; the plateau (the first sample after which RSS never rises more
than max(2 MB, 1%) above it, and when in simulated time); the least-squares slope over the last third of the
run, MB per simulated hour. So that 50,000 sensors fit in the time, every reporting interval is stretched
until an hour is at most --budget messages (the factor is printed; health checks follow the site file, so
slower sensors are not silent ones). Per sensor: the RSS difference between sizes at the end over the sensor
difference (the zones are the same 35 at every size).

Detection memory (in this process, tracemalloc): --detect-minutes (60) of the same feed go through the
Ingestor and the DetectionEngine as the service wires them, untraced, recording each model's inputs
(readings, zone states); then each model (ingest, zone tracker, sensor health, flow signals, forecaster,
grader, every registered surge detector) is built and fed its inputs alone inside a tracemalloc window: what
it still holds at the end is its memory. At the Lujiazui site's 132 sensors and at 1,000 (same zones): per
sensor = the difference over 868 sensors; per zone = the rest at 132 sensors over 35 zones. Surge detectors:
memory per zone and updates per second.

Usage:
    .venv/bin/python benchmarks/memory.py                   # 1k/10k/50k sensors, 8 h, 75,000 msgs/hour at most
    .venv/bin/python benchmarks/memory.py --sizes 1000 10000 --hours 12
    .venv/bin/python benchmarks/memory.py --quick           # about a minute: 300 sensors, 2 h across midnight

Ends with one line of key=value pairs: rss_mb_<size> (end), rss_start_mb_<size>, rss_plateau_mb_<size>,
plateau_h_<size>, slope_mb_per_h_<size> (last third), sim_h_<size>, startup_s_<size>, kb_per_sensor (largest
size step), detect_kb_per_zone, detect_kb_per_sensor, surge_kb_per_zone_<detector>, lost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from benchmarks._common import (  # noqa: E402
    ReadingFeed,
    broker,
    held_bytes,
    kv_line,
    new_service,
    print_machine,
    slope_per,
)
from benchmarks.scaled_site import write_scaled_site  # noqa: E402
from detect.registry import DEFAULT_SURGE  # noqa: E402
from domain.loader import load_site  # noqa: E402
from domain.messages import SIM_CLOCK_TOPIC  # noqa: E402
from domain.site import Site  # noqa: E402
from domain.values import Reading, ZoneState  # noqa: E402

SIZES = (1_000, 10_000, 50_000)
BUDGET = 75_000  # messages per simulated hour at most
HOURS = 8.0  # simulated hours: past the store's 6 h window and across midnight
START = "2026-12-29T20:00:00"  # a Tuesday evening in Shanghai: the weekday profile, then midnight
DETECT_START = "2026-12-30T18:00:00"  # the detection models' hour: a Wednesday evening, people arriving
TICK_S = 30.0  # the service's tick in the RSS runs (its default is 5 s: see the module docstring)
DETECT_TICK_S = 5.0  # the detection models are replayed at the service's default tick
MAX_WALL_S = 900.0  # per size: stop publishing after this long and report how far it got


def start_ts(site: Site, start: str = START) -> float:
    return dt.datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(site.info.timezone)).timestamp()


def _next_midnight(ts: float, site: Site) -> float:
    tz = ZoneInfo(site.info.timezone)
    day = dt.datetime.fromtimestamp(ts, tz).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(0), tz).timestamp()


def lead_s(tick_s: float) -> float:
    """How far the publisher may run ahead of the service's last tick, in simulated seconds."""
    return max(60.0, 4 * tick_s)


def per_hour(site: Site) -> float:
    return sum(3600.0 / s.interval_s for s in site.sensors.values())


def schedule(site: Site, seconds: int) -> list[list[int]]:
    """Sensor indices due in each simulated second: every sensor at its interval, phases spread evenly."""
    due: list[list[int]] = [[] for _ in range(seconds)]
    for i, s in enumerate(site.sensors.values()):
        t = (i * 0.6180339887 % 1.0) * s.interval_s  # golden-ratio phases: no burst at :00
        while t < seconds:
            due[int(t)].append(i)
            t += s.interval_s
    return due


# --- service RSS ----------------------------------------------------------------------------------------


@dataclass
class RssRun:
    sensors: int
    factor: float
    published: int = 0
    received: int = 0
    rejected: int = 0
    startup_s: float = 0.0
    rss_start_mb: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (simulated seconds in, RSS MB)
    wall_s: float = 0.0
    reached_s: float = 0.0  # simulated seconds published (less than asked if --max-wall stopped it)
    midnight_s: float = 0.0  # simulated seconds from the start to local midnight

    @property
    def rss_end_mb(self) -> float:
        return self.samples[-1][1] if self.samples else self.rss_start_mb

    def at(self, sim_s: float) -> float | None:
        """RSS at the first sample at or after sim_s (None if the run did not get there)."""
        return next((mb for t, mb in self.samples if t >= sim_s), None)

    def plateau(self) -> tuple[float, float]:
        """(simulated seconds, RSS MB) of the first sample after which RSS never rises more than
        max(2 MB, 1%) above it: when memory stopped growing."""
        best = self.samples[-1] if self.samples else (0.0, self.rss_start_mb)
        highest_after = -1.0
        for t, mb in reversed(self.samples):
            if highest_after <= mb + max(2.0, mb * 0.01):
                best = (t, mb)
            highest_after = max(highest_after, mb)
        return best

    def slope_mb_per_h(self, since_s: float) -> float:
        """Least-squares slope of RSS from since_s (simulated seconds in) to the end, per simulated hour."""
        return slope_per([(t, mb) for t, mb in self.samples if t >= since_s], 3600.0)


@dataclass
class _Pace:
    """What the publisher thread and the sampling loop share."""

    service_sim: float | None = None  # the service's simulated time (its last tick), from /api/district
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    published: int = 0  # readings (clock messages not counted: ingest does not count them)
    reached: float = 0.0  # simulated seconds published


def _publish(port: int, site: Site, t0: float, seconds: int, tick_s: float, pace: _Pace) -> None:
    """The simulated hours, second by second: the clock message, then the readings due. Keeps at most
    lead_s(tick_s) of simulated time ahead of the service, so the broker never holds a large backlog for it."""
    from sim.mqtt import MqttSink

    feed = ReadingFeed(site)
    sink = MqttSink("127.0.0.1", port, qos=1, window=5000, client_id="bench-memory-pub")
    try:
        for sec, due in enumerate(schedule(site, seconds)):
            t = t0 + sec
            while not pace.stop.is_set() and (pace.service_sim or t0) + lead_s(tick_s) < t:
                time.sleep(0.05)
            if pace.stop.is_set():
                break
            sink.publish(SIM_CLOCK_TOPIC, msgspec.json.encode({"epoch": t, "speed": 0.0}))
            for i in due:
                topic, payload, _ = feed.message(i, t)
                sink.publish(topic, payload)
                pace.published += 1
            pace.reached = sec + 1.0
        # The service ticks on the clock: one more tick past the end, so the last readings are in a state.
        end = t0 + pace.reached + tick_s
        sink.publish(SIM_CLOCK_TOPIC, msgspec.json.encode({"epoch": end, "speed": 0.0}))
    finally:
        sink.close(drain_s=600)
        pace.done.set()


def rss_run(
    workdir: Path,
    port: int,
    sensors: int,
    seconds: int,
    budget: int,
    max_wall_s: float,
    err: TextIO,
    *,
    start: str = START,
    tick_s: float = TICK_S,
) -> RssRun:
    base = load_site()
    factor = max(1.0, per_hour(base) * sensors / len(base.sensors) / budget)  # budget: messages per simulated hour
    site_path = write_scaled_site(sensors, workdir / f"site-{sensors}.toml", interval_factor=factor)
    site = load_site(site_path)
    run = RssRun(sensors, factor)
    svc = new_service(workdir, f"mem-{sensors}", mqtt_port=port, site=site_path, clock="sim", tick_s=tick_s)
    print(f"  {sensors:,} sensors (intervals x{factor:.1f}): starting crowdflow serve...", file=err, flush=True)
    t = time.perf_counter()
    svc.start()
    run.startup_s = time.perf_counter() - t
    run.rss_start_mb = svc.rss_kb() / 1024
    t0 = start_ts(site, start)
    run.midnight_s = _next_midnight(t0, site) - t0
    pace = _Pace()
    pub = threading.Thread(target=_publish, args=(port, site, t0, seconds, tick_s, pace), daemon=True)
    wall = time.perf_counter()
    pub.start()
    last_print = 0.0
    received = 0
    ingest: dict[str, Any] = {}
    try:
        while True:
            time.sleep(0.5)
            h = svc.health()
            ingest = h.get("pipeline", {}).get("ingest", {})
            received = int(ingest.get("received", 0))
            sim = svc.tick_ts()
            if sim is not None:
                pace.service_sim = float(sim)
                run.samples.append((float(sim) - t0, svc.rss_kb() / 1024))
            if time.perf_counter() - last_print > 15:
                last_print = time.perf_counter()
                at = f"{(float(sim) - t0) / 3600:.2f} simulated h" if sim is not None else "before the first tick"
                print(f"    {at}, {received:,} readings in, RSS {svc.rss_kb() / 1024:,.0f} MB", file=err, flush=True)
            if pace.done.is_set() and received >= pace.published and sim is not None and sim - t0 >= pace.reached:
                break
            if time.perf_counter() - wall > max_wall_s and not pace.stop.is_set():
                print(f"    stopping after {max_wall_s:.0f} s of wall time (--max-wall)", file=err, flush=True)
                pace.stop.set()
            if time.perf_counter() - wall > max_wall_s + 120:
                print("    the service did not catch up within 2 min of the stop", file=err, flush=True)
                break
        run.published, run.received = pace.published, received
        run.rejected = svc.rejected(ingest)
        run.reached_s = pace.reached
        run.wall_s = time.perf_counter() - wall
    finally:
        pace.stop.set()
        svc.stop()
    return run


# --- detection memory (tracemalloc, in this process) ----------------------------------------------------


@dataclass
class Recorded:
    """An untraced run's inputs to each model, replayed to each alone under tracemalloc."""

    messages: list[tuple[float, str, bytes]] = field(default_factory=list)  # (now, topic, payload)
    steps: list[tuple[float, list[Reading], list[ZoneState]]] = field(default_factory=list)  # per tick


def record(site: Site, seconds: int) -> Recorded:
    """The feed through Ingestor + DetectionEngine as the service runs them (a tick every DETECT_TICK_S of
    simulated time): the messages, and per tick the readings applied before it and the zone states it produced."""
    from detect.engine import DetectionEngine
    from domain.profile import CapacityProfile
    from ingest.pipeline import Ingestor

    feed = ReadingFeed(site)
    t0 = start_ts(site, DETECT_START)
    rec = Recorded()
    ingestor = Ingestor(site)
    engine = DetectionEngine(site, CapacityProfile(site))
    readings: list[Reading] = []
    next_tick = t0 + DETECT_TICK_S
    for sec, due in enumerate(schedule(site, seconds)):
        now = t0 + sec
        if now >= next_tick:
            states, _ = engine.tick(now)
            # A copy through JSON: the replayed models must not share objects with this engine.
            rec.steps.append((now, readings, msgspec.json.decode(msgspec.json.encode(states), type=list[ZoneState])))
            readings = []
            next_tick += DETECT_TICK_S
        for i in due:
            topic, payload, _ = feed.message(i, now)
            rec.messages.append((now, topic, payload))
            for r in ingestor.feed(topic, payload, now):
                engine.apply(r, now)
                readings.append(r)
    return rec


def component_memory(site: Site, rec: Recorded) -> dict[str, int]:
    """Bytes each model of the service's detection stage holds after the recorded run, each replayed alone."""
    from detect.flowsignals import FlowSignals
    from detect.forecast import CapacityForecaster
    from detect.grading import Grader
    from detect.health import SensorHealth
    from detect.state import ZoneTracker
    from domain.profile import CapacityProfile
    from ingest.pipeline import Ingestor

    profile = CapacityProfile(site)

    def ingest(m: Ingestor) -> None:
        for now, topic, payload in rec.messages:
            m.feed(topic, payload, now)

    def tracker(m: ZoneTracker) -> None:
        for now, readings, _ in rec.steps:
            for r in readings:
                m.apply(r)
            m.snapshot(now)

    def health(m: SensorHealth) -> None:
        for now, readings, states in rec.steps:
            for r in readings:
                m.apply(r, now)
            for st in states:
                m.zone_problems(st.zone, now)
                m.observe_zone(st)
            m.detections(now)

    def flows(m: FlowSignals) -> None:
        for now, readings, states in rec.steps:
            for r in readings:
                if r.kind == "flow":
                    m.apply(r)
            for st in states:
                m.observe_zone(st)
            m.detect(now)

    def forecaster(m: CapacityForecaster) -> None:
        for now, _, states in rec.steps:
            for st in states:
                m.update(st)
                m.detect(st, now)
                m.describe(st.zone)
                m.forecast(st.zone)

    def grader(m: Grader) -> None:
        for _, _, states in rec.steps:
            for st in states:
                m.grade(st)

    return {
        "ingest": held_bytes(lambda: Ingestor(site), ingest),
        "zone tracker": held_bytes(lambda: ZoneTracker(site, profile), tracker),
        "sensor health": held_bytes(lambda: SensorHealth(site), health),
        "flow signals": held_bytes(lambda: FlowSignals(site), flows),
        "forecaster": held_bytes(lambda: CapacityForecaster(site), forecaster),
        "grader": held_bytes(lambda: Grader(site), grader),
    }


def surge_detectors(site: Site, rec: Recorded) -> dict[str, tuple[float, float]]:
    """Per registered surge detector: (bytes per zone after the run, updates per second), on the same states."""
    from detect.registry import DETECTORS
    from detect.surge.monitor import SurgeMonitor
    from domain.profile import CapacityProfile

    profile = CapacityProfile(site)
    states = [st for _, _, sts in rec.steps for st in sts]

    def observe(m: SurgeMonitor) -> None:
        for st in states:
            m.observe(st)
            m.normal(st.zone, st.ts)

    out: dict[str, tuple[float, float]] = {}
    for name in DETECTORS:
        t = time.perf_counter()
        observe(SurgeMonitor(site, profile, detector=name))
        rate = len(states) / (time.perf_counter() - t)
        used = held_bytes(lambda name=name: SurgeMonitor(site, profile, detector=name), observe)  # type: ignore[misc]
        out[name] = (used / len(site.zones), rate)
    return out


# --- the run --------------------------------------------------------------------------------------------


def _mb(x: float | None) -> str:
    return f"{x:,.0f}" if x is not None else "-"


def run(
    sizes: list[int],
    seconds: int,
    budget: int,
    *,
    out: TextIO,
    err: TextIO,
    detect_seconds: int = 3600,
    detect_big: int = 1_000,
    max_wall_s: float = MAX_WALL_S,
    start: str = START,
    tick_s: float = TICK_S,
) -> dict[str, str]:
    print_machine(out)
    figs: dict[str, str] = {}
    runs: list[RssRun] = []
    with tempfile.TemporaryDirectory(prefix="cf-memory-") as tmp:
        work = Path(tmp)
        with broker(work / "broker") as srv:
            for n in sizes:
                runs.append(rss_run(work, srv.port, n, seconds, budget, max_wall_s, err, start=start, tick_s=tick_s))
        print(f"\nService RSS, MB, over {seconds / 3600:g} simulated hours from {start} (tick {tick_s:g} s). "
              "plateau: the first sample after which RSS never rises more than max(2 MB, 1%) above it (at: "
              "simulated h); slope: least squares over the last third, MB per simulated hour.", file=out)  # fmt: skip
        print(f"{'sensors':>8} {'x intv':>6} {'sim h':>5} {'readings':>9} {'lost':>5} {'startup s':>9} {'wall s':>6} "
              f"{'start':>6} {'1 h':>6} {'6 h':>6} {'0:00+':>6} {'end':>6} {'plateau':>7} {'at':>5} {'slope/h':>7}",
              file=out)  # fmt: skip
        lost = 0
        for r in runs:
            lost += r.published - r.received
            span = r.reached_s
            at_s, plateau_mb = r.plateau()
            slope = r.slope_mb_per_h(span * 2 / 3)
            print(f"{r.sensors:>8,} {r.factor:>6.1f} {span / 3600:>5.1f} {r.published:>9,} "
                  f"{r.published - r.received:>5} {r.startup_s:>9.0f} {r.wall_s:>6.0f} {r.rss_start_mb:>6,.0f} "
                  f"{_mb(r.at(3600)):>6} {_mb(r.at(6 * 3600)):>6} {_mb(r.at(r.midnight_s)):>6} "
                  f"{r.rss_end_mb:>6,.0f} {plateau_mb:>7,.0f} {at_s / 3600:>5.1f} {slope:>+7.2f}",
                  file=out)  # fmt: skip
            figs[f"rss_mb_{r.sensors}"] = f"{r.rss_end_mb:.0f}"
            figs[f"rss_start_mb_{r.sensors}"] = f"{r.rss_start_mb:.0f}"
            figs[f"rss_plateau_mb_{r.sensors}"] = f"{plateau_mb:.0f}"
            figs[f"plateau_h_{r.sensors}"] = f"{at_s / 3600:.1f}"
            figs[f"slope_mb_per_h_{r.sensors}"] = f"{slope:.2f}"
            figs[f"sim_h_{r.sensors}"] = f"{span / 3600:.1f}"
            figs[f"startup_s_{r.sensors}"] = f"{r.startup_s:.0f}"
        for a, b in itertools.pairwise(runs):
            kb = (b.rss_end_mb - a.rss_end_mb) * 1024 / (b.sensors - a.sensors)
            print(f"per sensor from {a.sensors:,} to {b.sensors:,}: {kb:,.1f} KB (target <= 2 KB)", file=out)
            figs["kb_per_sensor"] = f"{kb:.1f}"

    print(f"\nDetection memory after {detect_seconds / 60:.0f} simulated minutes (tracemalloc around each model), KB:",
          file=out)  # fmt: skip
    print("  detection models under tracemalloc...", file=err, flush=True)
    small = load_site()
    with tempfile.TemporaryDirectory(prefix="cf-memory-") as tmp:
        big = load_site(write_scaled_site(detect_big, Path(tmp) / f"site-{detect_big}.toml"))
    rec_small = record(small, detect_seconds)
    at_small = component_memory(small, rec_small)
    at_big = component_memory(big, record(big, detect_seconds))
    ns, nb, zones = len(small.sensors), len(big.sensors), len(small.zones)
    print(f"{'model':<24} {f'{ns} sensors':>12} {f'{nb} sensors':>12} {'per sensor':>11} {'per zone':>9}", file=out)
    total_zone = total_sensor = 0.0
    for name in at_small:
        per_sensor = (at_big[name] - at_small[name]) / (nb - ns)
        per_zone = max(0.0, at_small[name] - per_sensor * ns) / zones
        total_zone += per_zone
        total_sensor += per_sensor
        print(f"{name:<24} {at_small[name] / 1024:>12,.1f} {at_big[name] / 1024:>12,.1f} {per_sensor / 1024:>11,.2f} "
              f"{per_zone / 1024:>9,.1f}", file=out)  # fmt: skip
    surge = surge_detectors(small, rec_small)
    default = surge[DEFAULT_SURGE][0]
    total_zone += default
    print(f"{'surge (' + DEFAULT_SURGE + ')':<24} {default * zones / 1024:>12,.1f} {'':>12} {'':>11} "
          f"{default / 1024:>9,.1f}", file=out)  # fmt: skip
    print(f"{'total':<24} {'':>12} {'':>12} {total_sensor / 1024:>11,.2f} {total_zone / 1024:>9,.1f}   "
          "(targets: 2 KB per sensor, 200 KB per zone)", file=out)  # fmt: skip
    figs["detect_kb_per_zone"] = f"{total_zone / 1024:.1f}"
    figs["detect_kb_per_sensor"] = f"{total_sensor / 1024:.2f}"
    print(
        f"\nSurge detectors alone on the same zone states ({zones} zones, a tick every {DETECT_TICK_S:g} s):", file=out
    )
    for name, (per_zone_b, rate) in surge.items():
        print(f"  {name:<18} {per_zone_b / 1024:>7,.1f} KB per zone   {rate:>9,.0f} updates/s", file=out)
        figs[f"surge_kb_per_zone_{name}"] = f"{per_zone_b / 1024:.1f}"
    figs["lost"] = str(lost)
    print(kv_line(figs), file=out)
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--hours", type=float, default=HOURS, help="simulated hours of the RSS runs")
    ap.add_argument("--start", default=START, help="local ISO time the RSS runs start at")
    ap.add_argument("--tick", type=float, default=TICK_S, help="the service's tick in the RSS runs, simulated s")
    ap.add_argument("--budget", type=int, default=BUDGET, help="messages per simulated hour at most, per size")
    ap.add_argument(
        "--max-wall",
        type=float,
        default=MAX_WALL_S,
        help="per size: seconds of wall time after which publishing stops (the table says how far it got)",
    )
    ap.add_argument("--detect-minutes", type=float, default=60.0, help="simulated minutes for the detection models")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="about a minute: 300 sensors, 2 simulated hours across midnight, 10 minutes of detection",
    )
    a = ap.parse_args(argv)
    if a.quick:
        a.sizes, a.hours, a.budget, a.detect_minutes = [300], 2.0, 25_000, 10.0
        a.start = "2026-12-29T23:00:00"
    big = 300 if a.quick else 1_000
    figs = run(a.sizes, int(a.hours * 3600), a.budget, out=sys.stdout, err=sys.stderr, detect_big=big,
               detect_seconds=int(a.detect_minutes * 60), max_wall_s=a.max_wall, start=a.start,
               tick_s=a.tick)  # fmt: skip
    return 0 if figs["lost"] == "0" else 1


if __name__ == "__main__":
    sys.exit(main())
