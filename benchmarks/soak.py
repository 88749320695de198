"""Soak: 30 simulated days of the Lujiazui district through `crowdflow serve` at accelerated speed. Memory stays
flat, queues do not grow, every reading is accounted for, nothing goes wrong in the log (issue 7).

What runs: a private Mosquitto and `crowdflow serve` as a child process (embedded store with its SQLite file,
alerts journal, notifications recorded and not sent, the simulated clock). This process publishes the
simulator's district, day after day (benchmarks/district_days.py: Monday to Friday `weekday`, weekends and
fixed holidays `holiday`, 31 December `nye`; --days 30 ending on New Year's Eve: 20 weekdays, 9 weekend days,
the countdown), every sensor at its own reporting interval from the site file (132 sensors, 30 or 60 s:
252,000 readings a day, 7.6 million in 30 days), at QoS 1, with the simulator's clock message every 10
simulated seconds.

Speed, honestly: as fast as the service takes it. The publisher stays at most --backlog (20,000) readings
ahead of what the service has received, so the broker never holds more than a few simulated minutes for it;
the speed reached (simulated seconds per wall second) is printed per day. The service ticks every --tick
(60) simulated seconds instead of its default 5: a tick at the district costs milliseconds (models, alerts,
store, push), and 518,400 of them would take hours on 2 cores; what a tick keeps is bounded by time or by
count, not by how often it runs, so memory is tested all the same. The full run takes about 20-30 minutes on
this 2-core machine when it is not shared (more when it is: the speed is whatever the service sustains).

Sampled every second: the service's VmRSS, its simulated time (the newest reading, /healthz data_ts), and the
queues /healthz shows: the readings published but not yet received (the broker's and the client's backlog),
the readings ingest holds for a sequence gap, the store's pending points (spool), and the delivery queue
and in-flight jobs when /healthz reports them. At the end, after the last reading: every queue back to zero,
published = received = accepted + rejected (lost = published - received), the service stopped with SIGTERM
and its exit code, and its log read for errors: lines with Traceback, ERROR or CRITICAL, plus the store's and
the subscriber's error counters. crowdflow does not configure logging, so its warnings and errors reach the
log without a level: every other log line is counted as `log_lines` and the distinct ones are printed.

RSS: at the start (subscribed, no data yet), at the end of each simulated day, the highest, at the end; the
slope is the least-squares fit over the second half of the run, MB per simulated day.

Usage:
    .venv/bin/python benchmarks/soak.py                 # 30 days ending 2026-12-31, about 20-30 min
    .venv/bin/python benchmarks/soak.py --days 7 --last 2026-10-07
    .venv/bin/python benchmarks/soak.py --quick         # 2 days (30 Dec, New Year's Eve), sparser: under a minute

--quick stretches every reporting interval 4x and ticks every 300 s (63,000 readings a day) so two days fit in
a test (tests/benchmarks/test_soak_smoke.py).

Ends with one line of key=value pairs: days, sim_days_done, readings (published), received, accepted, rejected,
wall_s, speed, rss_start_mb, rss_day1_mb, rss_max_mb, rss_end_mb, rss_slope_mb_per_day, max_backlog, max_held,
queues_end (-1: not drained), errors, log_lines, lost, exit_code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from benchmarks._common import ServiceProcess, broker, kv_line, new_service, print_machine, slope_per  # noqa: E402
from benchmarks.district_days import DAY_START, Day, calendar, district_messages  # noqa: E402
from benchmarks.scaled_site import write_scaled_site  # noqa: E402
from domain.loader import load_site  # noqa: E402
from domain.messages import SIM_CLOCK_TOPIC  # noqa: E402
from domain.site import Site  # noqa: E402

DAYS = 30
LAST = "2026-12-31"  # the run ends with New Year's Eve
TICK_S = 60.0
CLOCK_S = 10.0  # a clock message every 10 simulated seconds: the simulator's step
BACKLOG = 20_000  # readings published and not yet received by the service, at most
SAMPLE_S = 1.0
DRAIN_S = 300.0  # after the last reading: how long the service may take to empty its queues
_ERROR = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")


@dataclass
class Sample:
    wall_s: float
    sim: float | None  # the service's newest reading, event time
    rss_mb: float
    received: int
    queues: dict[str, int | None]


@dataclass
class DayRow:
    day: Day
    readings: int = 0
    wall_s: float = 0.0
    rss_end_mb: float = 0.0
    max_backlog: int = 0
    max_held: int = 0
    alerts_open: int = 0
    errors: int = 0

    def speed(self) -> float:
        return 86400.0 / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class _Feed:
    """What the publisher thread and the sampling loop share."""

    received: int = 0  # by the service, as of the last sample
    published: int = 0  # readings (clock messages not counted: ingest does not count them)
    per_day: Counter[str] = field(default_factory=Counter)  # readings published per day (ISO date)
    reached: float = 0.0  # event time of the last reading published
    error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


def _publish(port: int, site: Site, last: dt.date, days: int, backlog: int, tick_s: float, feed: _Feed) -> None:
    """Every message of the days, in order, with a clock message every CLOCK_S; waits while the service is more
    than `backlog` readings behind."""
    from sim.mqtt import MqttSink

    sink = MqttSink("127.0.0.1", port, qos=1, window=5000, client_id="bench-soak-pub")
    try:
        next_clock: float | None = None
        for day, m in district_messages(site, last, days):
            if next_clock is None:
                next_clock = m.sim_ts
            while next_clock <= m.sim_ts:
                sink.publish(SIM_CLOCK_TOPIC, msgspec.json.encode({"epoch": next_clock, "speed": 0.0}))
                next_clock += CLOCK_S
            while feed.published - feed.received > backlog and not feed.stop.is_set():
                time.sleep(0.01)
            if feed.stop.is_set() or not sink.publish(m.topic, m.payload, feed.stop):
                break
            feed.published += 1
            feed.per_day[day.date.isoformat()] += 1
            feed.reached = m.sim_ts
        # One tick past the last reading, so it is in a zone state, stored and pushed.
        end = feed.reached + tick_s + CLOCK_S
        sink.publish(SIM_CLOCK_TOPIC, msgspec.json.encode({"epoch": end, "speed": 0.0}))
    except Exception as e:  # reported in the summary: a publisher failure is not a service failure
        feed.error = f"{type(e).__name__}: {e}"
    finally:
        sink.close(drain_s=600)
        feed.done.set()


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def queues(health: dict[str, Any], published: int) -> dict[str, int | None]:
    """Queue lengths: the backlog (published - received), ingest's held readings, and those /healthz reports of
    the store, the delivery queue and the subscriber (None where it does not report one)."""
    received = int(_get(health, "pipeline", "ingest", "received") or 0)
    store = _get(health, "pipeline", "store") or {}
    store_pending = [
        int(v) for k in ("queued", "queue", "pending", "spool_pending") if isinstance(v := store.get(k), int)
    ]
    dispatch = _get(health, "pipeline", "dispatcher") or _get(health, "dispatcher") or {}
    sub = health.get("subscriber") or {}
    hub_q = health.get("queued")  # per-client push queues, summed, if the hub reports them

    def first_int(d: dict[str, Any], *keys: str) -> int | None:
        for k in keys:
            v = d.get(k) if isinstance(d, dict) else None
            if isinstance(v, int | float):
                return int(v)
        return None

    return {
        "backlog": published - received,
        "held": int(_get(health, "pipeline", "ingest", "held") or 0),
        "store": int(sum(store_pending)) if store_pending else None,
        "dispatch": (first_int(dispatch, "queued") or 0) + (first_int(dispatch, "in_flight") or 0)
        if dispatch
        else None,
        "subscriber": first_int(sub, "queued", "inbox", "pending"),
        "hub": int(hub_q) if isinstance(hub_q, int | float) else None,
    }


def _errors_in(log: Path) -> tuple[int, list[str]]:
    """(lines that say ERROR, CRITICAL or Traceback, every other line of the log)."""
    errors = 0
    other: list[str] = []
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0, []
    for line in text.splitlines():
        if _ERROR.search(line):
            errors += 1
        elif line.strip() and not line.startswith("crowdflow serving:"):
            other.append(line.strip())
    return errors, other


@dataclass
class Soak:
    days: list[Day]
    start_mb: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    rows: list[DayRow] = field(default_factory=list)
    published: int = 0
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    wall_s: float = 0.0
    drained: bool = False
    queues_end: dict[str, int | None] = field(default_factory=dict)
    counters_bad: dict[str, int] = field(default_factory=dict)  # error counters from /healthz, non-zero
    errors: int = 0
    log_lines: list[str] = field(default_factory=list)
    exit_code: int | None = None
    publisher_error: str = ""

    def rss_slope_mb_per_day(self) -> float:
        """Least squares of RSS over simulated time, second half of the run, MB per simulated day."""
        pts = [(s.sim, s.rss_mb) for s in self.samples if s.sim is not None]
        if len(pts) < 3:
            return 0.0
        t0, t1 = pts[0][0], pts[-1][0]
        return slope_per([(t, mb) for t, mb in pts if t >= (t0 + t1) / 2], 86400.0)

    @property
    def lost(self) -> int:
        return self.published - self.received


def _day_bounds(site: Site, days: list[Day]) -> list[tuple[Day, float, float]]:
    tz = site.info.timezone
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    out = []
    for d in days:
        start = dt.datetime.combine(d.date, DAY_START, zone).timestamp()
        end = dt.datetime.combine(d.date + dt.timedelta(days=1), DAY_START, zone).timestamp()
        out.append((d, start, end))
    return out


def soak(
    days: int,
    last: dt.date,
    *,
    tick_s: float = TICK_S,
    backlog: int = BACKLOG,
    interval_factor: float = 1.0,
    out: TextIO,
    err: TextIO,
) -> Soak:
    plan = calendar(last, days)
    result = Soak(plan)
    with tempfile.TemporaryDirectory(prefix="cf-soak-") as tmp:
        work = Path(tmp)
        site_path = None
        if interval_factor != 1.0:
            base = load_site()
            site_path = write_scaled_site(len(base.sensors), work / "site.toml", interval_factor=interval_factor)
        site = load_site(site_path)
        with broker(work / "broker") as srv:
            svc = new_service(work, "soak", mqtt_port=srv.port, site=site_path, clock="sim", tick_s=tick_s)
            print(f"  starting crowdflow serve ({len(site.sensors)} sensors, {len(site.zones)} zones, tick "
                  f"{tick_s:g} s), then {days} simulated days {plan[0].date} to {plan[-1].date}...", file=err,
                  flush=True)  # fmt: skip
            svc.start()
            try:
                result.start_mb = svc.rss_kb() / 1024
                _run(svc, srv.port, site, plan, last, tick_s, backlog, result, err)
            finally:
                result.exit_code = svc.stop(timeout_s=60)
                result.errors, result.log_lines = _errors_in(svc.log)
                if result.exit_code not in (0, None):
                    print(f"  crowdflow serve exited with {result.exit_code}:\n{svc.log_tail()}", file=err)
    _report(result, tick_s, out)
    return result


def _run(
    svc: ServiceProcess,
    port: int,
    site: Site,
    plan: list[Day],
    last: dt.date,
    tick_s: float,
    backlog: int,
    result: Soak,
    err: TextIO,
) -> None:
    feed = _Feed()
    bounds = _day_bounds(site, plan)
    pub = threading.Thread(
        target=_publish, args=(port, site, last, len(plan), backlog, tick_s, feed), daemon=True, name="soak-publisher"
    )
    wall0 = time.perf_counter()
    pub.start()
    rows: dict[int, DayRow] = {}
    day_i = 0
    day_wall0 = 0.0
    last_print = 0.0
    pub_end: float | None = None  # when the publisher finished: from then on the service has DRAIN_S to drain
    quiet = 0
    health: dict[str, Any] = {}
    try:
        while True:
            time.sleep(SAMPLE_S)
            health = svc.health(timeout_s=30)
            now = time.perf_counter() - wall0
            q = queues(health, feed.published)
            feed.received = int(_get(health, "pipeline", "ingest", "received") or 0)
            sim = health.get("data_ts")
            sample = Sample(now, float(sim) if sim is not None else None, svc.rss_kb() / 1024, feed.received, q)
            result.samples.append(sample)
            # The day the service is in; close the rows of the days it has finished.
            while day_i < len(bounds) and sample.sim is not None and sample.sim >= bounds[day_i][2]:
                row = rows.setdefault(day_i, DayRow(bounds[day_i][0]))
                row.rss_end_mb = sample.rss_mb
                row.wall_s = now - day_wall0
                row.alerts_open = int(_get(health, "pipeline", "alerts", "open") or 0)
                row.errors = _errors_in(svc.log)[0]
                day_wall0 = now
                day_i += 1
            if day_i < len(bounds):
                row = rows.setdefault(day_i, DayRow(bounds[day_i][0]))
                row.max_backlog = max(row.max_backlog, q["backlog"] or 0)
                row.max_held = max(row.max_held, q["held"] or 0)
            if now - last_print >= 30:
                last_print = now
                _progress(sample, bounds, day_i, feed, err)
            if feed.done.is_set():
                pub_end = now if pub_end is None else pub_end
                quiet = 0 if any(q.values()) else quiet + 1
                if quiet >= 2:  # two samples in a row with every queue empty
                    result.drained = True
                    break
                if now - pub_end > DRAIN_S:
                    break
    finally:
        feed.stop.set()
        pub.join(30)
    # The last day's row closes at the end if the final tick did not carry the service past 01:00.
    if day_i < len(bounds):
        row = rows.setdefault(day_i, DayRow(bounds[day_i][0]))
        row.rss_end_mb = result.samples[-1].rss_mb if result.samples else 0.0
        row.wall_s = result.samples[-1].wall_s - day_wall0 if result.samples else 0.0
        row.alerts_open = int(_get(health, "pipeline", "alerts", "open") or 0)
    for i, row in rows.items():
        row.readings = feed.per_day[bounds[i][0].date.isoformat()]
    result.rows = [rows[i] for i in sorted(rows)]
    result.wall_s = time.perf_counter() - wall0
    result.published = feed.published
    ingest = _get(health, "pipeline", "ingest") or {}
    result.received = int(ingest.get("received", 0))
    result.accepted = int(ingest.get("accepted", 0))
    result.rejected = sum(int(v) for v in (ingest.get("rejected") or {}).values())
    result.queues_end = result.samples[-1].queues if result.samples else {}
    result.publisher_error = feed.error
    store = _get(health, "pipeline", "store") or {}
    sub = health.get("subscriber") or {}
    bad = {
        "store.points_failed": store.get("points_failed", 0),
        "store.points_invalid": store.get("points_invalid", 0),
        "store.queue_dropped": store.get("queue_dropped", 0),
        "subscriber.handler_errors": sub.get("handler_errors", 0),
        "subscriber.dropped": sub.get("dropped", 0),
        "pipeline.deadletter_dropped": _get(health, "pipeline", "deadletter_dropped") or 0,
        "alerts.notifications_dropped": _get(health, "pipeline", "alerts", "notifications_dropped") or 0,
    }
    result.counters_bad = {k: int(v) for k, v in bad.items() if isinstance(v, int | float) and v}
    if store.get("last_error"):
        result.counters_bad["store.last_error"] = 1
        result.log_lines.append(f"/healthz store last_error: {store['last_error']}")


def _progress(s: Sample, bounds: list[tuple[Day, float, float]], day_i: int, feed: _Feed, err: TextIO) -> None:
    if s.sim is None or day_i >= len(bounds):
        where = "before the first reading" if s.sim is None else "after the last day"
    else:
        d, start, _ = bounds[day_i]
        clock = (dt.datetime.combine(d.date, DAY_START) + dt.timedelta(seconds=s.sim - start)).strftime("%H:%M")
        where = f"day {day_i + 1}/{len(bounds)} {d.date} ({d.date:%a} {d.kind}) {clock}"
    q = ", ".join(f"{k} {v:,}" for k, v in s.queues.items() if v is not None)
    print(f"    {s.wall_s:5.0f} s  {where}: {s.received:,} readings in, {q}, RSS {s.rss_mb:,.0f} MB",
          file=err, flush=True)  # fmt: skip


def _report(r: Soak, tick_s: float, out: TextIO) -> None:
    print(f"\nSoak: {len(r.days)} simulated days {r.days[0].date} to {r.days[-1].date}, tick {tick_s:g} s, "
          f"{r.wall_s:,.0f} s wall ({len(r.rows) * 86400 / max(r.wall_s, 1e-9):,.0f}x); RSS MB at each day's end; "
          "backlog: readings published and not yet received; held: waiting in ingest for a sequence gap",
          file=out)  # fmt: skip
    print(f"{'day':>3} {'date':>10} {'kind':>8} {'readings':>9} {'wall s':>6} {'speed':>6} {'RSS':>6} "
          f"{'backlog':>8} {'held':>5} {'alerts':>6} {'errors':>6}", file=out)  # fmt: skip
    for i, row in enumerate(r.rows, 1):
        print(f"{i:>3} {row.day.date!s:>10} {row.day.kind:>8} {row.readings:>9,} {row.wall_s:>6.0f} "
              f"{row.speed():>5,.0f}x {row.rss_end_mb:>6,.0f} {row.max_backlog:>8,} {row.max_held:>5,} "
              f"{row.alerts_open:>6} {row.errors:>6}", file=out)  # fmt: skip
    day1 = r.rows[0].rss_end_mb if r.rows else 0.0
    rss = [s.rss_mb for s in r.samples] or [0.0]
    end = r.samples[-1].rss_mb if r.samples else 0.0
    print(f"RSS: start {r.start_mb:,.0f} MB, after day 1 {day1:,.0f}, highest {max(rss):,.0f}, end {end:,.0f}; "
          f"slope over the second half {r.rss_slope_mb_per_day():+.2f} MB per simulated day", file=out)  # fmt: skip
    qe = ", ".join(f"{k} {v}" for k, v in r.queues_end.items() if v is not None)
    unknown = [k for k, v in r.queues_end.items() if v is None]
    print(f"Queues at the end: {qe}" + (f" (not in /healthz: {', '.join(unknown)})" if unknown else "")
          + ("" if r.drained else f" -- NOT drained within {DRAIN_S:.0f} s"), file=out)  # fmt: skip
    print(f"Readings: published {r.published:,}, received {r.received:,} (accepted {r.accepted:,}, rejected "
          f"{r.rejected:,}), lost {r.lost:,}", file=out)  # fmt: skip
    print(
        f"Service: exit code {r.exit_code}; log: {r.errors} error lines, {len(r.log_lines)} other lines"
        + (f"; non-zero error counters in /healthz: {r.counters_bad}" if r.counters_bad else ""),
        file=out,
    )
    for line, n in Counter(r.log_lines).most_common(10):
        print(f"  {n:>5} x {line[:160]}", file=out)
    if r.publisher_error:
        print(f"Publisher failed: {r.publisher_error}", file=out)
    figs = {
        "days": len(r.days),
        "sim_days_done": len(r.rows),
        "readings": r.published,
        "received": r.received,
        "accepted": r.accepted,
        "rejected": r.rejected,
        "wall_s": f"{r.wall_s:.0f}",
        "speed": f"{len(r.rows) * 86400 / max(r.wall_s, 1e-9):.0f}",
        "rss_start_mb": f"{r.start_mb:.0f}",
        "rss_day1_mb": f"{day1:.0f}",
        "rss_max_mb": f"{max(rss):.0f}",
        "rss_end_mb": f"{end:.0f}",
        "rss_slope_mb_per_day": f"{r.rss_slope_mb_per_day():.2f}",
        "max_backlog": max((row.max_backlog for row in r.rows), default=0),
        "max_held": max((row.max_held for row in r.rows), default=0),
        "queues_end": sum(v for v in r.queues_end.values() if v is not None) if r.drained else -1,
        "errors": r.errors + sum(r.counters_bad.values()),
        "log_lines": len(r.log_lines),
        "lost": r.lost,
        "exit_code": r.exit_code,
    }
    print(kv_line(figs), file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=DAYS)
    ap.add_argument("--last", type=dt.date.fromisoformat, default=dt.date.fromisoformat(LAST),
                    help="the last simulated day (ISO date); the run ends at 01:00 the day after")  # fmt: skip
    ap.add_argument("--tick", type=float, default=TICK_S, help="the service's tick, simulated seconds")
    ap.add_argument("--backlog", type=int, default=BACKLOG, help="readings the publisher may run ahead, at most")
    ap.add_argument("--interval-factor", type=float, default=1.0, help="stretch every reporting interval")
    ap.add_argument("--quick", action="store_true", help="2 days, intervals x4, tick 300 s: under a minute")
    a = ap.parse_args(argv)
    if a.quick:
        a.days, a.interval_factor, a.tick = 2, 4.0, 300.0
    print_machine(sys.stdout)
    r = soak(a.days, a.last, tick_s=a.tick, backlog=a.backlog, interval_factor=a.interval_factor,
             out=sys.stdout, err=sys.stderr)  # fmt: skip
    ok = r.lost == 0 and r.drained and r.errors == 0 and not r.counters_bad and r.exit_code == 0
    return 0 if ok and not r.publisher_error else 1


if __name__ == "__main__":
    sys.exit(main())
