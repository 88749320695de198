"""Publish-to-push latency: from a sensor's publish to the zone state (and, for a surge, the alert) that
reflects it arriving on a /ws push-stream client, p50/p95/p99, at the Lujiazui design load (one message per
sensor per second: 132 msg/s) and at 5x and 10x it (each sensor reporting 5 or 10 times a second).

How: a publisher process (paho, QoS 1) sends valid readings for every sensor, paced, stamping each with its
publish wall time; a /ws client in this process notes when each zone view arrives. Every counter reading adds
a known number of arrivals to its zone, so reading n of a zone is reflected in the first pushed view whose
`arrivals_today` reaches the zone's running total after n. A surge sets a zone's anchors to 4x capacity:
I red at once, and its alert's first push is timed from the first surge reading.

The service grades on a tick (service.tick_s, 5 s by default) and the push hub sends at most one delta per
0.25 s. Two runs, each against its own `crowdflow serve` child process:
- "as configured": tick_s = 5 (what a deployment gets: mostly the wait for the next tick);
- "fast tick": tick_s = 0.1, showing the pipeline's own latency (ingest, tick, hub batching, websocket).
Each latency is also split at the pushed zone state's ts (the tick that computed it): publish -> tick (the
wait for the tick, ingest included) and tick -> arrival (tick work, the hub's batching, the websocket). With
the fast tick several ticks merge into one delta, which carries the newest tick's state and ts, so there the
split moves time from the second part to the first; the total is exact either way. "Beyond tick wait" is the
push time minus the first tick boundary after the publish (the service ticks on multiples of tick_s): the
pipeline's own latency, which the tick alone does not explain (a tick that missed the reading, tick work,
batching, the websocket).

Usage:
    .venv/bin/python benchmarks/latency.py            # both runs, 1x/5x/10x for 30 s (fast tick: 20 s) each
    .venv/bin/python benchmarks/latency.py --quick    # seconds: fast tick only, 4 s per load
    .venv/bin/python benchmarks/latency.py --seconds 60

Ends with one line of key=value pairs: p50_ms, p95_ms, p99_ms, p99_5x_ms, p99_10x_ms, own_p99_ms (beyond the
tick wait) and alert_p50_ms for the run as configured, the same with a fast_ prefix for the fast tick, and lost
(readings never reflected).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from benchmarks._common import (  # noqa: E402
    ReadingFeed,
    ServiceProcess,
    broker,
    kv_line,
    new_service,
    percentile,
    print_machine,
)
from domain.loader import load_site  # noqa: E402

LOADS = (1, 5, 10)  # x the design load
SURGE_SHARE = 4.0  # what a surging zone's anchors report, x capacity: I red at the first reading
# Zones far apart (no shared incidents or inhibition between them), surged one after another.
SURGE_ZONES = (
    "metro-exit-1",
    "super-brand-mall",
    "shanghai-tower",
    "riverside-s02",
    "central-green",
    "times-square",
    "riverside-s07",
    "laoshan-residential",
    "shipyard-1862",
)
WARMUP_S = 3.0  # the first seconds of a run are left out (the service's first ticks, the client connecting)


class Plan(msgspec.Struct):
    phases: list[tuple[int, float]]  # (load factor, seconds)
    surges: list[tuple[str, float, float]]  # (zone, seconds after the start, how long)


class Record(msgspec.Struct):
    start: float  # wall time the publisher started
    probes: list[tuple[float, str, int]]  # (publish time, zone, zone's running arrivals after it)
    surges: list[tuple[str, float]]  # (zone, publish time of its first surge reading)
    phase_starts: list[tuple[int, float]]  # (load factor, wall time)
    published: int


# --- the publisher (a child process: its CPU is not the client's) ---------------------------------------


def publish_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="latency.py --publish")
    ap.add_argument("--publish", action="store_true", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--plan", required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    from sim.mqtt import MqttSink

    plan = msgspec.json.decode(a.plan.encode(), type=Plan)
    site = load_site()
    feed = ReadingFeed(site)
    anchors: dict[str, list[int]] = {}
    for i, s in enumerate(feed.sensors):
        if s.kind != "counter":
            anchors.setdefault(s.zone, []).append(i)
    sink = MqttSink("127.0.0.1", a.port, qos=1, client_id="bench-latency-pub")
    totals: dict[str, int] = {}
    probes: list[tuple[float, str, int]] = []
    surges: list[tuple[str, float]] = []
    phase_starts: list[tuple[int, float]] = []
    clock = time.time
    start = clock()
    pending = sorted(plan.surges, key=lambda s: s[1])
    surging: dict[str, float] = {}  # zone -> surge end (wall time)

    def send(i: int, share: float | None = None) -> float:
        t = clock()
        topic, payload, added = feed.message(i, t, share)
        sink.publish(topic, payload)
        if added:
            zone = feed.sensors[i].zone
            totals[zone] = totals.get(zone, 0) + added
            probes.append((t, zone, totals[zone]))
        return t

    t0 = start
    size = len(feed)
    for factor, seconds in plan.phases:
        phase_starts.append((factor, t0))
        feed.interval_s = 1.0 / factor  # what each count message says its interval is
        per_s = size * factor
        total = int(per_s * seconds)
        for k in range(total):
            due = t0 + k / per_s
            while pending and clock() - start >= pending[0][1]:
                zone, _, hold = pending.pop(0)
                surging[zone] = clock() + hold
                surges.append((zone, min(send(i, SURGE_SHARE) for i in anchors[zone])))
            wait = due - clock()
            if wait > 0:
                time.sleep(wait)
            i = k % size
            zone = feed.sensors[i].zone
            until = surging.get(zone)
            share = SURGE_SHARE if until is not None and feed.sensors[i].kind != "counter" and clock() < until else None
            send(i, share)
        t0 += seconds
    sink.close(drain_s=30)
    rec = Record(start=start, probes=probes, surges=surges, phase_starts=phase_starts, published=feed.sent)
    a.out.write_bytes(msgspec.json.encode(rec))
    return 0


# --- the push-stream client -----------------------------------------------------------------------------


@dataclass
class Seen:
    zones: list[tuple[float, str, int, float]] = field(default_factory=list)  # (arrival, zone, arrivals, ts)
    alerts: list[tuple[float, str, int]] = field(default_factory=list)  # (arrival, zone, level)
    messages: int = 0


async def watch(port: int, seen: Seen, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    decoder = msgspec.json.Decoder()
    clock = time.time
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            arrival = clock()
            msg = decoder.decode(raw)
            seen.messages += 1
            if msg.get("type") not in ("snapshot", "delta"):
                continue
            for z in msg.get("zones") or ():
                if z.get("arrivals_today") is not None:
                    seen.zones.append((arrival, z["id"], int(z["arrivals_today"]), float(z["ts"])))
            for al in msg.get("alerts") or ():
                seen.alerts.append((arrival, al["zone"], int(al["level"])))


# --- one run --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    load: int
    e2e: float  # seconds, publish -> push
    before: float  # publish -> the zone state's ts (the tick that reflected it)
    after: float  # the tick -> push
    own: float  # the next tick boundary after the publish -> push: the latency beyond the wait for the tick


def match(rec: Record, seen: Seen, tick_s: float) -> tuple[list[Sample], int, list[tuple[int, float]]]:
    """Latency samples per probe, probes never reflected, and alert latencies (load, seconds)."""
    by_zone: dict[str, list[tuple[float, int, float]]] = {}
    for arrival, zone, arrivals, ts in seen.zones:
        by_zone.setdefault(zone, []).append((arrival, arrivals, ts))

    def load_at(t: float) -> int:
        load = rec.phase_starts[0][0]
        for factor, t0 in rec.phase_starts:
            if t >= t0:
                load = factor
        return load

    samples: list[Sample] = []
    lost = 0
    cursor: dict[str, int] = {}
    for pub, zone, total in rec.probes:
        views = by_zone.get(zone, [])
        j = cursor.get(zone, 0)
        while j < len(views) and views[j][1] < total:
            j += 1
        cursor[zone] = j
        if j == len(views):
            lost += 1
            continue
        arrival, _, ts = views[j]
        if pub - rec.start >= WARMUP_S:
            boundary = (pub // tick_s + 1) * tick_s  # the service ticks on multiples of tick_s (Pipeline.maybe_tick)
            samples.append(Sample(load_at(pub), arrival - pub, ts - pub, arrival - ts, arrival - boundary))
    alerts: list[tuple[int, float]] = []
    for zone, t in rec.surges:
        first = next((a for a, z, lv in seen.alerts if z == zone and lv == 4 and a >= t), None)
        if first is not None:
            alerts.append((load_at(t), first - t))
    return samples, lost, alerts


def run_once(
    workdir: Path, port: int, name: str, tick_s: float, phases: list[tuple[int, float]], surges_per_phase: int,
    err: TextIO,
) -> dict[str, Any]:  # fmt: skip
    svc: ServiceProcess = new_service(workdir, name, mqtt_port=port, site=None, tick_s=tick_s)
    hold = tick_s + 2.0  # a surge lasts past the next tick, so the tick sees it
    surges: list[tuple[str, float, float]] = []
    zones = iter(SURGE_ZONES)
    t = 0.0
    for _, seconds in phases:
        for k in range(surges_per_phase):
            zone = next(zones, None)
            if zone is not None:
                surges.append((zone, t + seconds * (k + 1) / (surges_per_phase + 1), hold))
        t += seconds
    plan = Plan(phases=phases, surges=surges)
    out = workdir / f"{name}-published.json"
    loads = ", ".join(f"{f}x for {s:g} s" for f, s in phases)
    print(f"  {name}: tick_s={tick_s:g}, loads {loads}", file=err, flush=True)
    svc.start()
    try:
        seen = Seen()
        samples, lost, alerts, rec, health = asyncio.run(_drive(svc, port, tick_s, plan, out, seen))
    finally:
        svc.stop()
    ingest = health.get("pipeline", {}).get("ingest", {})
    return {"name": name, "tick_s": tick_s, "sensors": len(load_site().sensors), "samples": samples, "lost": lost,
            "alerts": alerts, "published": rec.published, "received": int(ingest.get("received", -1)),
            "rejected": svc.rejected(ingest), "pushes": seen.messages}  # fmt: skip


async def _drive(
    svc: ServiceProcess, port: int, tick_s: float, plan: Plan, out: Path, seen: Seen
) -> tuple[list[Sample], int, list[tuple[int, float]], Record, dict[str, Any]]:
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(svc.http_port, seen, stop))
    await asyncio.sleep(0.5)  # connected and past the snapshot
    argv = [sys.executable, __file__, "--publish", "--port", str(port), "--plan",
            msgspec.json.encode(plan).decode(), "--out", str(out)]  # fmt: skip
    pub = await asyncio.create_subprocess_exec(*argv, cwd=ROOT)
    rc = await pub.wait()
    if rc != 0:
        stop.set()
        raise RuntimeError(f"publisher failed ({rc})")
    await asyncio.sleep(tick_s + 1.5)  # the last readings' tick and push
    stop.set()
    with contextlib.suppress(Exception):
        await watcher
    rec = msgspec.json.decode(await asyncio.to_thread(out.read_bytes), type=Record)
    health = await asyncio.to_thread(_settled_health, svc)
    samples, lost, alerts = match(rec, seen, tick_s)
    return samples, lost, alerts, rec, health


def _settled_health(svc: ServiceProcess) -> dict[str, Any]:
    time.sleep(1.2)  # /healthz counters are updated once a second
    return svc.health()


def _ms(x: float) -> str:
    return f"{x * 1000:.0f}"


def summarise(run: dict[str, Any], out: TextIO) -> dict[str, str]:
    samples: list[Sample] = run["samples"]
    figs: dict[str, str] = {}
    print(f"\n{run['name']} (tick_s = {run['tick_s']:g}): {run['published']:,} published, "
          f"{run['received']:,} received, {run['rejected']} rejected, {run['lost']} never reflected, "
          f"{run['pushes']:,} pushes", file=out)  # fmt: skip
    print(f"  {'load':>5} {'msg/s':>6} {'n':>6}  {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6} ms   "
          f"publish->tick p50/p99  tick->push p50/p99  beyond tick wait p50/p99", file=out)  # fmt: skip
    for load in sorted({s.load for s in samples}):
        xs = [s for s in samples if s.load == load]
        e2e = [s.e2e for s in xs]
        before = [s.before for s in xs]
        after = [s.after for s in xs]
        own = [s.own for s in xs]
        p50, p95, p99 = (percentile(e2e, p) for p in (50, 95, 99))
        print(f"  {load:>4}x {run['sensors'] * load:>6} {len(xs):>6}  {_ms(p50):>6} {_ms(p95):>6} {_ms(p99):>6} "
              f"{_ms(max(e2e)):>6}      {_ms(percentile(before, 50)):>6} {_ms(percentile(before, 99)):>6}      "
              f"{_ms(percentile(after, 50)):>6} {_ms(percentile(after, 99)):>6}      "
              f"{_ms(percentile(own, 50)):>6} {_ms(percentile(own, 99)):>6}", file=out)  # fmt: skip
        if load == 1:
            figs.update(p50_ms=_ms(p50), p95_ms=_ms(p95), p99_ms=_ms(p99), own_p99_ms=_ms(percentile(own, 99)))
        else:
            figs[f"p99_{load}x_ms"] = _ms(p99)
            figs[f"own_p99_{load}x_ms"] = _ms(percentile(own, 99))
    alerts = [a for _, a in run["alerts"]]
    if alerts:
        shown = ", ".join(f"{load}x {_ms(a)} ms" for load, a in run["alerts"])
        print(f"  alert I red pushed after the first surge reading: {shown}", file=out)
        figs["alert_p50_ms"] = _ms(percentile(alerts, 50))
        figs["alert_max_ms"] = _ms(max(alerts))
    return figs


def _clear_of_midnight(needed_s: float, err: TextIO) -> None:
    """Zones' arrivals_today restart at local midnight, which would unmatch every later reading: wait it out."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    now = dt.datetime.now(ZoneInfo(load_site().info.timezone))
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = (midnight - now).total_seconds()
    if left < needed_s:
        print(f"  waiting {left + 5:.0f} s for local midnight to pass (arrivals_today restarts then)", file=err)
        time.sleep(left + 5)


def run(seconds: float, quick: bool, *, out: TextIO, err: TextIO) -> dict[str, str]:
    print_machine(out)
    _clear_of_midnight(seconds * len(LOADS) * 2 + 120, err)
    figs: dict[str, str] = {}
    lost = 0
    with tempfile.TemporaryDirectory(prefix="cf-latency-") as tmp:
        work = Path(tmp)
        with broker(work / "broker") as srv:
            runs = [("fast tick", 0.1, seconds * 2 / 3 if not quick else seconds)]
            if not quick:
                runs.insert(0, ("as configured", 5.0, seconds))
            for name, tick_s, secs in runs:
                phases = [(f, secs) for f in LOADS]
                r = run_once(work, srv.port, name.replace(" ", "-"), tick_s, phases, 1 if quick else 3, err)
                part = summarise(r, out)
                lost += r["lost"] + max(0, r["published"] - r["received"])
                prefix = "" if name == "as configured" or quick else "fast_"
                figs.update({f"{prefix}{k}": v for k, v in part.items()})
                figs[f"{prefix}tick_s"] = f"{tick_s:g}"
    figs["lost"] = str(lost)
    print("\nlost = readings never reflected in a pushed zone state + readings the service did not receive", file=out)
    print(kv_line(figs), file=out)
    return figs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--publish" in argv:
        return publish_main(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="per load (the fast-tick run takes 2/3 of it)")
    ap.add_argument("--quick", action="store_true", help="seconds: the fast-tick run only, 4 s per load")
    a = ap.parse_args(argv)
    seconds = 4.0 if a.quick else a.seconds
    figs = run(seconds, a.quick, out=sys.stdout, err=sys.stderr)
    return 0 if figs["lost"] == "0" else 1


if __name__ == "__main__":
    sys.exit(main())
