"""Detection hot path at scale, in process: building the engine, the work per message and per tick.

Per site size (the Lujiazui site with its sensors scaled to N, zones unchanged, benchmarks/scaled_site.py),
each size in a fresh child process so its RSS is its own:
1. construct: `DetectionEngine(site)` built, seconds, and the RSS it added (MB).
2. stuck tick: every sensor sends 12 readings a minute apart from 18:00 on a weekday (the profile expects
   people), every other one repeating its value (zero counts, a frozen area count or density), the rest
   moving; then `engine.tick` twice at the end (the seconds of the slower one). Sensor health then checks
   each repeating anchor against every neighbouring sensor's moves. The stuck problems found, and a digest
   of their sensors and details, must not change with an optimisation.
3. handle: `crowdflow.service.Pipeline.handle` per message (decode, validate, sequence, zone state, flow
   signals, sensor health, store write) on valid readings (benchmarks/_common.py ReadingFeed), every sensor
   warmed with one message first; ticks switched off (tick_s huge), so this is the per-message work alone:
   wall time (handle_us) and this process's CPU time (handle_cpu_us, less moved by other work on a shared
   machine, which takes the CPU away but does not bill it here). Then one `engine.tick` on that steady state.
4. memory per sensor (sizes up to 10,000): sensor health and flow signals each built and fed the stuck
   run's readings inside a tracemalloc window; bytes still held / sensors.

Usage:
    .venv/bin/python benchmarks/detect_hotpath.py                     # 1k / 10k / 50k sensors
    .venv/bin/python benchmarks/detect_hotpath.py --sizes 1000 10000
    .venv/bin/python benchmarks/detect_hotpath.py --quick             # seconds: 200 and 1,000 sensors

Prints a table and ends with one line of key=value pairs: construct_s_<n>, engine_mb_<n>, handle_us_<n>,
handle_cpu_us_<n>, tick_ms_<n>, stuck_tick_ms_<n>, stuck_<n>, stuck_digest_<n>, health_kb_per_sensor_<n>,
flows_kb_per_sensor_<n>.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import ReadingFeed, held_bytes, kv_line, print_machine, write_config  # noqa: E402
from benchmarks.scaled_site import write_scaled_site  # noqa: E402
from domain.loader import load_site  # noqa: E402
from domain.site import Sensor, Site  # noqa: E402
from domain.values import Reading  # noqa: E402

SIZES = (1_000, 10_000, 50_000)
QUICK_SIZES = (200, 1_000)
START = "2026-12-30T18:00:00"  # a Wednesday evening in Shanghai: the weekday profile expects people
ROUNDS = 12  # readings per sensor in the stuck run (sensor health calls 10 repeats stuck)
MESSAGES = 100_000
QUICK_MESSAGES = 5_000
MEMORY_UP_TO = 10_000  # tracemalloc per-sensor memory only up to this size (it is slow under tracing)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stuck_run(site: Site) -> tuple[list[tuple[float, list[Reading]]], float]:
    """ROUNDS rounds of one reading per sensor, a minute apart; even sensors repeat, odd ones move. Returns
    the rounds (event time, readings) and the time to tick at."""
    t0 = dt.datetime.fromisoformat(START).replace(tzinfo=ZoneInfo(site.info.timezone)).timestamp()
    rounds = []
    for k in range(ROUNDS):
        ts = t0 + 60.0 * k
        rounds.append((ts, [_reading(s, i, k, ts, site) for i, s in enumerate(site.sensors.values())]))
    return rounds, t0 + 60.0 * (ROUNDS - 1) + 1.0


def _reading(s: Sensor, i: int, k: int, ts: float, site: Site) -> Reading:
    moving = i % 2 == 1
    zone = site.zones[s.zone]
    if s.kind == "counter":
        cin, cout = (5 + k % 3, 4 + k % 2) if moving else (0, 0)
        return Reading(sensor=s.id, zone=s.zone, kind="flow", ts=ts, seq=k, interval_s=60.0, inflow=cin, outflow=cout)
    people = 0.3 * zone.capacity + (k if moving else 0)
    if s.kind == "area":
        return Reading(sensor=s.id, zone=s.zone, kind="occupancy", ts=ts, seq=k, count=round(people))
    return Reading(sensor=s.id, zone=s.zone, kind="density", ts=ts, seq=k, density=round(people / zone.area_m2, 4))


def child(site_path: Path, messages: int, workdir: Path) -> dict[str, Any]:
    """Every figure for one site size (run in its own process)."""
    from crowdflow.config import load_config
    from crowdflow.service import Service
    from detect.engine import DetectionEngine
    from detect.flowsignals import FlowSignals
    from detect.health import SensorHealth

    site = load_site(site_path)
    n = len(site.sensors)
    out: dict[str, Any] = {"sensors": n, "zones": len(site.zones)}
    rounds, end = _stuck_run(site)
    gc.collect()
    rss0 = _rss_mb()
    t = time.perf_counter()
    engine = DetectionEngine(site)
    out["construct_s"] = time.perf_counter() - t
    gc.collect()
    out["engine_mb"] = _rss_mb() - rss0

    for ts, readings in rounds:
        for r in readings:
            engine.apply(r, ts)
    ticks = []
    for k in range(2):
        t = time.perf_counter()
        engine.tick(end + k)
        ticks.append(time.perf_counter() - t)
    out["stuck_tick_ms"] = max(ticks) * 1e3
    stuck = sorted((p.sensor, p.detail) for p in engine.health.check(end + 1) if p.kind == "stuck")
    out["stuck"] = len(stuck)
    out["stuck_digest"] = hashlib.sha1(json.dumps(stuck).encode()).hexdigest()[:10]
    del engine
    gc.collect()

    if n <= MEMORY_UP_TO:

        def feed_health(h: SensorHealth) -> None:
            for ts, readings in rounds:
                for r in readings:
                    h.apply(r, ts)

        def feed_flows(f: FlowSignals) -> None:
            for _, readings in rounds:
                for r in readings:
                    f.apply(r)

        out["health_kb_per_sensor"] = held_bytes(lambda: SensorHealth(site), feed_health) / n / 1024
        out["flows_kb_per_sensor"] = held_bytes(lambda: FlowSignals(site), feed_flows) / n / 1024
    rounds.clear()

    cfg_path = write_config(
        workdir / "crowdflow.toml",
        mqtt_port=1,  # never connected: Pipeline.handle is called directly
        http_port=1,
        site=site_path,
        data_dir=workdir / "var",
        client_id="bench-detect-hotpath",
        tick_s=1e12,  # no tick during the timed messages: per-message work alone
    )
    service = Service(load_config(cfg_path), site=site, quiet=True)
    try:
        pipeline = service.pipeline
        feed = ReadingFeed(site)
        now = time.time
        warm = now()
        for i in range(n):  # every stream seen once (first messages create per-sensor state)
            topic, payload, _ = feed.message(i, warm)
            pipeline.handle(topic, payload, now())
        took = cpu = 0.0
        done = 0
        while done < messages:
            ts = now()
            batch = [feed.message((done + j) % n, ts)[:2] for j in range(min(10_000, messages - done))]
            t, c = time.perf_counter(), time.process_time()
            for topic, payload in batch:
                pipeline.handle(topic, payload, now())
            took += time.perf_counter() - t
            cpu += time.process_time() - c
            done += len(batch)
        accepted = pipeline.ingestor.stats.accepted
        if accepted != n + messages:
            raise RuntimeError(f"the pipeline accepted {accepted} of {n + messages} readings")
        out["handle_us"] = took / messages * 1e6
        out["handle_cpu_us"] = cpu / messages * 1e6
        t = time.perf_counter()
        pipeline.engine.tick(now())
        out["tick_ms"] = (time.perf_counter() - t) * 1e3
    finally:
        service.journal.close()
        service.store.close()
    return out


def run(sizes: tuple[int, ...], messages: int, out: Any = None) -> dict[str, str]:
    print_machine(out)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            site_path = write_scaled_site(n, Path(tmp) / f"site-{n}.toml")
            work = Path(tmp) / f"work-{n}"
            work.mkdir()
            print(f"{n:,} sensors...", file=sys.stderr, flush=True)
            argv = [sys.executable, __file__, "--child", str(site_path), "--messages", str(messages)]
            argv += ["--workdir", str(work)]
            r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"child for {n} sensors failed:\n{r.stdout}\n{r.stderr}")
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(
        f"{'sensors':>8} {'construct s':>11} {'engine MB':>9} {'handle µs':>9} {'CPU µs':>6} {'tick ms':>8} "
        f"{'stuck tick ms':>13} {'stuck':>6} {'health KB/s':>11} {'flows KB/s':>10}",
        file=out,
    )
    figs: dict[str, str] = {}
    for row in rows:
        n = row["sensors"]
        hk, fk = row.get("health_kb_per_sensor"), row.get("flows_kb_per_sensor")
        print(
            f"{n:>8,} {row['construct_s']:>11.2f} {row['engine_mb']:>9.1f} {row['handle_us']:>9.1f} "
            f"{row['handle_cpu_us']:>6.1f} "
            f"{row['tick_ms']:>8.0f} {row['stuck_tick_ms']:>13.0f} {row['stuck']:>6,} "
            f"{'-' if hk is None else f'{hk:.2f}':>11} {'-' if fk is None else f'{fk:.2f}':>10}",
            file=out,
        )
        figs[f"construct_s_{n}"] = f"{row['construct_s']:.2f}"
        figs[f"engine_mb_{n}"] = f"{row['engine_mb']:.1f}"
        figs[f"handle_us_{n}"] = f"{row['handle_us']:.1f}"
        figs[f"handle_cpu_us_{n}"] = f"{row['handle_cpu_us']:.1f}"
        figs[f"tick_ms_{n}"] = f"{row['tick_ms']:.0f}"
        figs[f"stuck_tick_ms_{n}"] = f"{row['stuck_tick_ms']:.0f}"
        figs[f"stuck_{n}"] = str(row["stuck"])
        figs[f"stuck_digest_{n}"] = row["stuck_digest"]
        if hk is not None and fk is not None:
            figs[f"health_kb_per_sensor_{n}"] = f"{hk:.2f}"
            figs[f"flows_kb_per_sensor_{n}"] = f"{fk:.2f}"
    print(kv_line(figs), file=out)
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, {QUICK_MESSAGES:,} messages")
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--messages", type=int, help=f"timed messages per size (default {MESSAGES:,})")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    messages = args.messages or (QUICK_MESSAGES if args.quick else MESSAGES)
    if args.child is not None:
        print(json.dumps(child(args.child, messages, args.workdir)))
        return 0
    sizes = tuple(args.sizes) if args.sizes else (QUICK_SIZES if args.quick else SIZES)
    run(sizes, messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
