"""Where the service's memory goes over simulated time: `crowdflow serve`'s objects driven in this process, with
tracemalloc snapshots diffed along the way.

The service (crowdflow.service.Service: embedded store, hub, alerts, detection, the simulated clock; nothing
started, no broker) takes the district's days (benchmarks/district_days.py) message by message through its
MQTT handler, with a clock message every --clock (30) simulated seconds. tracemalloc starts after --warm (2)
simulated hours, once everything built at the first readings exists; a snapshot is taken every --every (6)
hours and compared with the first: the allocation sites that grew most are printed (file:line, KB, blocks).
At the end, the sizes of the service's windows: the embedded store's ring (bytes), the hub's resume window
(deltas, characters and bytes of the texts held), the alert book (alerts held, resolved ones kept).

--per-sensor A B: where the memory per sensor goes instead. The service is built in this process for the
Lujiazui site scaled to A and then to B sensors (benchmarks/scaled_site.py, zones unchanged) and fed --rounds
(2) readings of every sensor, all under tracemalloc (after a small warm-up build, so imports are not counted);
the allocation sites are compared between the two, and each one's difference over B - A is printed: bytes and
blocks per sensor, largest first. Per-zone state (the store's ring, the hub's deltas) shows up when it was
made at one size and not yet at the other: it is not per sensor.

Usage:
    .venv/bin/python benchmarks/memory_where.py                       # 2 days ending 31 Dec (the countdown)
    .venv/bin/python benchmarks/memory_where.py --days 1 --last 2026-12-30 --every 3
    .venv/bin/python benchmarks/memory_where.py --quick               # 4 simulated hours, snapshots hourly
    .venv/bin/python benchmarks/memory_where.py --per-sensor 1000 5000

Ends with one line of key=value pairs: sim_h, traced_growth_kb (first to last snapshot), store_ring_kb,
hub_resume_deltas, hub_resume_kb, alerts_held; with --per-sensor: traced_b_per_sensor, sensors_a, sensors_b.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from benchmarks._common import kv_line, print_machine  # noqa: E402
from benchmarks.district_days import district_messages  # noqa: E402
from domain.loader import load_site  # noqa: E402
from domain.messages import SIM_CLOCK_TOPIC  # noqa: E402

_SKIP = ("*/sim/*", "*/benchmarks/*", tracemalloc.__file__)  # the feed and this script are not the service


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, p) for p in _SKIP])


def run(days: int, last: dt.date, clock_s: float, warm_h: float, every_h: float, limit_h: float | None,
        top: int, out: TextIO) -> dict[str, str]:  # fmt: skip
    from crowdflow.config import load_config
    from crowdflow.service import Service

    print_machine(out)
    site = load_site()
    with tempfile.TemporaryDirectory(prefix="cf-where-") as tmp:
        cfg_path = Path(tmp) / "crowdflow.toml"
        cfg_path.write_text(f'[service]\ndata_dir = "{tmp}/var"\nclock = "sim"\n\n[alerts]\ndeliver = false\n')
        svc = Service(load_config(cfg_path, env={}), quiet=True)
        t0: float | None = None
        clock = 0.0
        next_snap = 0.0
        first: tracemalloc.Snapshot | None = None
        last_snap: tracemalloc.Snapshot | None = None
        wall = time.perf_counter()
        sim_h = 0.0
        print(f"{'sim h':>6} {'RSS MB':>7} {'traced MB':>9} {'wall s':>6}   largest growth since the first snapshot",
              file=out)  # fmt: skip
        try:
            for _day, m in district_messages(site, last, days):
                if t0 is None:
                    t0, clock, next_snap = m.sim_ts, m.sim_ts - clock_s, m.sim_ts + warm_h * 3600
                while clock + clock_s <= m.sim_ts:
                    clock += clock_s
                    svc._handle(SIM_CLOCK_TOPIC, msgspec.json.encode({"epoch": clock, "speed": 0.0}), 0.0)
                sim_h = (m.sim_ts - t0) / 3600
                if limit_h is not None and sim_h >= limit_h:
                    break
                if m.sim_ts >= next_snap:
                    next_snap += every_h * 3600
                    if first is None:
                        tracemalloc.start(1)
                        first = last_snap = _snapshot()
                        print(f"{sim_h:>6.1f} {_rss_mb():>7.1f} {'':>9} {time.perf_counter() - wall:>6.0f}   "
                              "(tracing starts)", file=out, flush=True)  # fmt: skip
                    else:
                        last_snap = _snapshot()
                        _print_growth(sim_h, first, last_snap, top, wall, out)
                svc._handle(m.topic, m.payload, 0.0)
            if first is not None:
                last_snap = _snapshot()
                _print_growth(sim_h, first, last_snap, top, wall, out)
        finally:
            growth = _growth_kb(first, last_snap)
            tracemalloc.stop()
            figs = _windows(svc, out)
            svc.store.close()
            svc.journal.close()
    return {"sim_h": f"{sim_h:.1f}", "traced_growth_kb": f"{growth:.0f}", **figs}


def _growth_kb(first: tracemalloc.Snapshot | None, last: tracemalloc.Snapshot | None) -> float:
    if first is None or last is None:
        return 0.0
    return sum(s.size_diff for s in last.compare_to(first, "filename")) / 1024


def _print_growth(
    sim_h: float, first: tracemalloc.Snapshot, snap: tracemalloc.Snapshot, top: int, wall: float, out: TextIO
) -> None:
    traced = sum(s.size for s in snap.statistics("filename")) / 1e6
    print(f"{sim_h:>6.1f} {_rss_mb():>7.1f} {traced:>9.2f} {time.perf_counter() - wall:>6.0f}   total "
          f"{_growth_kb(first, snap):+,.0f} KB", file=out, flush=True)  # fmt: skip
    for st in snap.compare_to(first, "lineno")[:top]:
        if abs(st.size_diff) < 4096:
            continue
        frame = st.traceback[0]
        where = "/".join(Path(frame.filename).parts[-2:])
        print(f"{'':>33}{st.size_diff / 1024:>+9,.1f} KB {st.count_diff:>+7,} blocks  {where}:{frame.lineno}",
              file=out)  # fmt: skip


def _windows(svc: object, out: TextIO) -> dict[str, str]:
    """The sizes of the service's bounded windows at the end (the hub's and the book's through their private
    attributes: a benchmark's look inside, not an API)."""
    store = getattr(svc, "store", None)
    ring = int(store.memory_bytes()) if store is not None and hasattr(store, "memory_bytes") else 0
    hub = getattr(svc, "hub", None)
    recent = list(getattr(hub, "_recent", ()))
    texts = [m.text for m in recent]
    chars = sum(len(t) for t in texts)
    held = sum(sys.getsizeof(t) for t in texts)
    book = getattr(getattr(svc, "alerts", None), "book", None)
    alerts = len(getattr(book, "_alerts", {}))
    resolved = len(getattr(book, "_resolved", ()))
    print(f"\nAt the end: embedded store ring {ring / 1024:,.0f} KB; hub resume window {len(texts)} deltas, "
          f"{chars:,} characters, {held / 1024:,.0f} KB; alert book {alerts} alerts ({resolved} resolved)",
          file=out)  # fmt: skip
    return {
        "store_ring_kb": f"{ring / 1024:.0f}",
        "hub_resume_deltas": str(len(texts)),
        "hub_resume_kb": f"{held / 1024:.0f}",
        "alerts_held": str(alerts),
    }


def _built_and_fed(sensors: int, rounds: int, tmp: Path) -> tracemalloc.Snapshot:
    """A snapshot of everything allocated while the service for `sensors` was built and fed `rounds` readings
    of every sensor (the feed made beforehand, outside the trace)."""
    from benchmarks._common import ReadingFeed
    from benchmarks.scaled_site import write_scaled_site
    from crowdflow.config import load_config
    from crowdflow.service import Service

    site_path = write_scaled_site(sensors, tmp / f"site-{sensors}.toml")
    cfg_path = tmp / f"crowdflow-{sensors}.toml"
    cfg_path.write_text(
        f'[service]\nsite = "{site_path}"\ndata_dir = "{tmp}/var-{sensors}"\n\n[alerts]\ndeliver = false\n'
    )
    feed = ReadingFeed(load_site(site_path))
    t0 = time.time()
    messages = [feed.message(i, t0 + 60 * r)[:2] for r in range(rounds) for i in range(sensors)]
    gc.collect()
    tracemalloc.start(1)
    try:
        svc = Service(load_config(cfg_path, env={}), quiet=True)
        handle = svc.pipeline.handle
        for topic, payload in messages:
            handle(topic, payload, t0)
        snap = _snapshot()
    finally:
        tracemalloc.stop()
    svc.store.close()
    svc.journal.close()
    return snap


def per_sensor(a: int, b: int, rounds: int, top: int, out: TextIO) -> dict[str, str]:
    print_machine(out)
    with tempfile.TemporaryDirectory(prefix="cf-where-") as tmp:
        _built_and_fed(min(100, a), rounds, Path(tmp))  # imports and whatever is made once per process
        small = _built_and_fed(a, rounds, Path(tmp))
        big = _built_and_fed(b, rounds, Path(tmp))
    stats = big.compare_to(small, "lineno")
    per = sum(st.size_diff for st in stats) / (b - a)
    print(f"Traced memory per sensor, {a:,} -> {b:,} sensors, built and fed {rounds} readings each: {per:,.0f} bytes",
          file=out)  # fmt: skip
    for st in stats[:top]:
        frame = st.traceback[0]
        where = "/".join(Path(frame.filename).parts[-2:])
        print(f"  {st.size_diff / (b - a):>8,.1f} B {st.count_diff / (b - a):>6.2f} blocks  {where}:{frame.lineno}",
              file=out)  # fmt: skip
    return {"traced_b_per_sensor": f"{per:.0f}", "sensors_a": str(a), "sensors_b": str(b)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--last", type=dt.date.fromisoformat, default=dt.date(2026, 12, 31))
    ap.add_argument("--clock", type=float, default=30.0, help="simulated seconds between clock messages")
    ap.add_argument("--warm", type=float, default=2.0, help="simulated hours before tracing starts")
    ap.add_argument("--every", type=float, default=6.0, help="simulated hours between snapshots")
    ap.add_argument("--top", type=int, default=8, help="allocation sites shown per snapshot")
    ap.add_argument("--quick", action="store_true", help="4 simulated hours of 30 Dec, a snapshot every hour")
    ap.add_argument("--per-sensor", type=int, nargs=2, metavar=("A", "B"), help="bytes per sensor, A to B sensors")
    ap.add_argument("--rounds", type=int, default=2, help="--per-sensor: readings fed per sensor")
    a = ap.parse_args(argv)
    if a.per_sensor:
        lo, hi = a.per_sensor
        print(kv_line(per_sensor(lo, hi, a.rounds, max(a.top, 25), sys.stdout)))
        return 0
    limit = None
    if a.quick:
        a.days, a.last, a.warm, a.every, limit = 1, dt.date(2026, 12, 30), 1.0, 1.0, 4.0
    figs = run(a.days, a.last, a.clock, a.warm, a.every, limit, a.top, sys.stdout)
    print(kv_line(figs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
