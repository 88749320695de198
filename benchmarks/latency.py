"""Publish-to-push latency: from a sensor's publish to the zone state (and, for a surge, the alert) that
reflects it arriving on a /ws push-stream client, p50/p95/p99, at the Lujiazui design load (one message per
sensor per second: 132 msg/s) and at 5x and 10x it (each sensor reporting 5 or 10 times a second).

How: a publisher process (paho, QoS 1) sends valid readings for every sensor, paced, stamping each with its
publish wall time; a /ws client in this process notes when each zone view arrives. It connects where the walls
do: the service's push process (dashboard.push_port, a free port here; dashboard/pushserver.py), so the
latency includes the hop over the link from the service to it. Every counter reading adds
a known number of arrivals to its zone, so reading n of a zone is reflected in the first pushed view whose
`arrivals_today` reaches the zone's running total after n. A surge sets a zone's anchors to 4x capacity:
I red at once, and its alert's first push is timed from the first surge reading.

The service grades on a tick (service.tick_s, 5 s by default); between ticks its live path pushes the zones
that had readings service.live_s (0.05 s) after the first of them, and the hub sends at most one delta per
dashboard.push_interval_s (0.05 s). Two runs side by side, each against its own `crowdflow serve` child:
- "as configured": tick_s = 5 with the live path (what a deployment gets);
- "ticks only": tick_s = 5, live_s = 0, push_interval_s = 0.25: how the service pushed before the live path
  (every reading waited for the next tick, then for the hub's batching).
Each latency is also split at the pushed zone state's ts (when the service computed it, live push or tick):
publish -> state (ingest and the wait for the push or the tick) and state -> arrival (the hub's batching and
the websocket).

Usage:
    .venv/bin/python benchmarks/latency.py            # both runs, 1x/5x/10x for 30 s each
    .venv/bin/python benchmarks/latency.py --quick    # seconds: "as configured" only, 4 s per load
    .venv/bin/python benchmarks/latency.py --seconds 60

Ends with one line of key=value pairs: p50_ms, p95_ms, p99_ms, p99_5x_ms, p99_10x_ms, alert_p50_ms and
alert_max_ms for the run as configured, the same with a ticks_only_ prefix for the other run, and lost
(readings never reflected, both runs).
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
    BENCH_TOKEN,
    ReadingFeed,
    ServiceProcess,
    broker,
    kv_line,
    new_service,
    percentile,
    print_machine,
)
from domain.loader import load_site  # noqa: E402
from tests.servers import free_port  # noqa: E402

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
    auth = {"Authorization": f"Bearer {BENCH_TOKEN}"}  # a non-browser client may authenticate in the handshake
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, additional_headers=auth) as ws:
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
    before: float  # publish -> the zone state's ts (the live push or tick that computed it)
    after: float  # that state's ts -> arrival on the client


def match(rec: Record, seen: Seen) -> tuple[list[Sample], int, list[tuple[int, float]]]:
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
            samples.append(Sample(load_at(pub), arrival - pub, ts - pub, arrival - ts))
    alerts: list[tuple[int, float]] = []
    for zone, t in rec.surges:
        first = next((a for a, z, lv in seen.alerts if z == zone and lv == 4 and a >= t), None)
        if first is not None:
            alerts.append((load_at(t), first - t))
    return samples, lost, alerts


@dataclass(frozen=True)
class Setup:
    name: str
    tick_s: float
    live_s: float
    push_interval_s: float


AS_CONFIGURED = Setup("as configured", 5.0, 0.05, 0.05)  # crowdflow.config's defaults
TICKS_ONLY = Setup("ticks only", 5.0, 0.0, 0.25)  # before the live path


def _tune(config: Path, setup: Setup) -> None:
    """Add the live path's settings to the benchmark config (written by benchmarks._common.write_config)."""
    text = config.read_text(encoding="utf-8")
    text = text.replace("[service]\n", f"[service]\nlive_s = {setup.live_s}\n", 1)
    text = text.replace(
        "[dashboard]\n", f"[dashboard]\npush_interval_s = {setup.push_interval_s}\n", 1
    )
    config.write_text(text, encoding="utf-8")


def run_once(
    workdir: Path, port: int, setup: Setup, phases: list[tuple[int, float]], surges_per_phase: int, err: TextIO,
) -> dict[str, Any]:  # fmt: skip
    name, tick_s = setup.name.replace(" ", "-"), setup.tick_s
    push_port = free_port()
    svc: ServiceProcess = new_service(workdir, name, mqtt_port=port, site=None, tick_s=tick_s, push_port=push_port)
    _tune(svc.config, setup)
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
    print(f"  {setup.name}: tick_s={tick_s:g} live_s={setup.live_s:g} push_interval_s={setup.push_interval_s:g}, "
          f"loads {loads}", file=err, flush=True)  # fmt: skip
    svc.start()
    try:
        if svc.push_port != push_port:
            raise RuntimeError(f"the push process is not up on {push_port}: {svc.health().get('relay')}")
        seen = Seen()
        samples, lost, alerts, rec, health = asyncio.run(_drive(svc, push_port, port, tick_s, plan, out, seen))
    finally:
        svc.stop()
    ingest = health.get("pipeline", {}).get("ingest", {})
    return {"name": setup.name, "setup": setup, "sensors": len(load_site().sensors), "samples": samples, "lost": lost,
            "alerts": alerts, "published": rec.published, "received": int(ingest.get("received", -1)),
            "rejected": svc.rejected(ingest), "pushes": seen.messages}  # fmt: skip


async def _drive(
    svc: ServiceProcess, push_port: int, port: int, tick_s: float, plan: Plan, out: Path, seen: Seen
) -> tuple[list[Sample], int, list[tuple[int, float]], Record, dict[str, Any]]:
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(push_port, seen, stop))
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
    samples, lost, alerts = match(rec, seen)
    return samples, lost, alerts, rec, health


def _settled_health(svc: ServiceProcess) -> dict[str, Any]:
    time.sleep(1.2)  # /healthz counters are updated once a second
    return svc.health()


def _ms(x: float) -> str:
    return f"{x * 1000:.0f}"


def summarise(run: dict[str, Any], out: TextIO) -> dict[str, str]:
    samples: list[Sample] = run["samples"]
    figs: dict[str, str] = {}
    st: Setup = run["setup"]
    print(f"\n{run['name']} (tick_s = {st.tick_s:g}, live_s = {st.live_s:g}, push_interval_s = "
          f"{st.push_interval_s:g}): {run['published']:,} published, "
          f"{run['received']:,} received, {run['rejected']} rejected, {run['lost']} never reflected, "
          f"{run['pushes']:,} pushes", file=out)  # fmt: skip
    print(f"  {'load':>5} {'msg/s':>6} {'n':>6}  {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6} ms   "
          f"publish->state p50/p99  state->push p50/p99", file=out)  # fmt: skip
    for load in sorted({s.load for s in samples}):
        xs = [s for s in samples if s.load == load]
        e2e = [s.e2e for s in xs]
        before = [s.before for s in xs]
        after = [s.after for s in xs]
        p50, p95, p99 = (percentile(e2e, p) for p in (50, 95, 99))
        print(f"  {load:>4}x {run['sensors'] * load:>6} {len(xs):>6}  {_ms(p50):>6} {_ms(p95):>6} {_ms(p99):>6} "
              f"{_ms(max(e2e)):>6}      {_ms(percentile(before, 50)):>6} {_ms(percentile(before, 99)):>6}      "
              f"{_ms(percentile(after, 50)):>6} {_ms(percentile(after, 99)):>6}", file=out)  # fmt: skip
        if load == 1:
            figs.update(p50_ms=_ms(p50), p95_ms=_ms(p95), p99_ms=_ms(p99))
        else:
            figs[f"p99_{load}x_ms"] = _ms(p99)
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
            for setup in (AS_CONFIGURED,) if quick else (AS_CONFIGURED, TICKS_ONLY):
                phases = [(f, seconds) for f in LOADS]
                r = run_once(work, srv.port, setup, phases, 1 if quick else 3, err)
                part = summarise(r, out)
                lost += r["lost"] + max(0, r["published"] - r["received"])
                prefix = "" if setup is AS_CONFIGURED else "ticks_only_"
                figs.update({f"{prefix}{k}": v for k, v in part.items()})
    figs["lost"] = str(lost)
    print("\nlost = readings never reflected in a pushed zone state + readings the service did not receive", file=out)
    print(kv_line(figs), file=out)
    return figs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--publish" in argv:
        return publish_main(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="per load and run")
    ap.add_argument("--quick", action="store_true", help="seconds: the run as configured only, 4 s per load")
    a = ap.parse_args(argv)
    seconds = 4.0 if a.quick else a.seconds
    figs = run(seconds, a.quick, out=sys.stdout, err=sys.stderr)
    return 0 if figs["lost"] == "0" else 1


if __name__ == "__main__":
    sys.exit(main())
