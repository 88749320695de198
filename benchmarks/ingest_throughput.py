"""Ingest throughput: how many readings/s the full `crowdflow serve` pipeline takes from a real Mosquitto, with
nothing lost, against a bare aiomqtt subscriber that only counts, on the same feed in the same run.

How it measures, per site size (the Lujiazui site with its sensors scaled to 1,000 / 10,000 / 50,000, zones
unchanged, benchmarks/scaled_site.py) and per QoS (0 and 1):
1. Each consumer gets a persistent session at the broker (same subscription, own client id) and goes away:
   the service (`crowdflow serve` as a child process, own config, embedded store, alerts recorded only), a
   bare aiomqtt 2.x subscriber, a bare paho subscriber (the network thread aiomqtt wraps) and mosquitto_sub
   (C: the machine's ceiling).
2. N valid readings (every sensor in turn, each stream's seq counting up; counts, running totals, occupancy,
   density) are published at that QoS. The broker queues them for every session (BROKER_CONF: no limit).
3. Each consumer connects alone and drains the queue; nothing else runs, so each has one core and the
   broker the other, and every consumer sees exactly the same feed. The rate is taken between 10% and 90%
   of the messages (start-up and the tail left out), for the service from its /healthz ingest counters
   (updated once a second; a poll every 0.1 s dates each update).
`lost` = published - received by the service's ingest (IngestStats.received); the service must also have
accepted every one (IngestStats.accepted; nothing in IngestStats.rejected).

Usage:
    .venv/bin/python benchmarks/ingest_throughput.py                  # 1k/10k/50k sensors, QoS 0 and 1
    .venv/bin/python benchmarks/ingest_throughput.py --sizes 10000 --qos 1 --messages 200000
    .venv/bin/python benchmarks/ingest_throughput.py --quick          # seconds: 300 sensors, QoS 1, 6,000 msgs
    .venv/bin/python benchmarks/ingest_throughput.py --profile DIR    # py-spy the service while it drains

Prints a table and ends with one line of key=value pairs for the size with the lowest ratio, e.g.
    ingest_qos1_msgs_per_s=9100 bare_qos1_msgs_per_s=17800 paho_qos1_msgs_per_s=22000 ratio=0.51 ... lost=0
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    ReadingFeed,
    ServiceProcess,
    broker,
    kv_line,
    new_service,
    print_machine,
)
from benchmarks.scaled_site import write_scaled_site  # noqa: E402
from domain.loader import load_site  # noqa: E402
from domain.messages import SIM_CLOCK_TOPIC, SUBSCRIPTION  # noqa: E402
from sim.mqtt import MqttSink  # noqa: E402
from tests.servers import free_port  # noqa: E402

SIZES = (1_000, 10_000, 50_000)
MESSAGES = 100_000
IDLE_S = 8.0  # a consumer that receives nothing for this long has got all it will get
LOW, HIGH = 0.1, 0.9  # the rate is measured between these fractions of the feed
# Pipeline.handle is also timed in this process, unless building the pipeline takes longer than this (50,000
# sensors: minutes, in detect/health.py's neighbour table), which would double the run for one figure.
HANDLE_COST_MAX_STARTUP_S = 30.0


@dataclass
class Drain:
    consumer: str
    expected: int
    received: int
    rate: float  # messages/s between LOW and HIGH of the feed (0 if it never got there)
    seconds: float  # first to last message
    accepted: int | None = None  # the service only
    rejected: int | None = None

    @property
    def lost(self) -> int:
        return self.expected - self.received


def _rate_between(samples: Sequence[tuple[float, float]], expected: int) -> float:
    """Messages/s between the times the count crossed LOW and HIGH of `expected` (linear interpolation)."""

    def crossing(target: float) -> float | None:
        for (t0, n0), (t1, n1) in itertools.pairwise(samples):
            if n0 < target <= n1:
                return t0 + (t1 - t0) * (target - n0) / (n1 - n0)
        return None

    lo, hi = crossing(LOW * expected), crossing(HIGH * expected)
    if lo is None or hi is None or hi <= lo:
        return 0.0
    return (HIGH - LOW) * expected / (hi - lo)


# --- bare consumers (run as child processes: `--consume aiomqtt|paho`) -----------------------------------


class _Counter:
    """Counts and notes when the count reaches the LOW and HIGH marks; a few ns per message."""

    def __init__(self, expected: int) -> None:
        self.n = 0
        self.marks = (math.ceil(LOW * expected), math.ceil(HIGH * expected))
        self.times: dict[int, float] = {}
        self.first = self.last = 0.0

    def result(self, expected: int) -> dict[str, Any]:
        lo, hi = self.marks
        rate = 0.0
        if lo in self.times and hi in self.times and self.times[hi] > self.times[lo]:
            rate = (hi - lo) / (self.times[hi] - self.times[lo])
        return {"received": self.n, "rate": rate, "seconds": self.last - self.first, "expected": expected}


async def _aiomqtt_drain(port: int, qos: int, client_id: str, expected: int, prime: bool) -> dict[str, Any]:
    import aiomqtt

    c = _Counter(expected)
    lo, hi = c.marks
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=client_id, clean_session=False, max_queued_incoming_messages=0
    ) as client:
        await client.subscribe([(SUBSCRIPTION, qos), (SIM_CLOCK_TOPIC, qos)])
        if prime:
            return {}

        async def count() -> None:
            clock = time.perf_counter
            async for _ in client.messages:  # only counts: the floor under any consumer built on aiomqtt
                c.n += 1
                n = c.n
                if n == 1:
                    c.first = clock()
                if n in (lo, hi):
                    c.times[n] = clock()
                if n >= expected:
                    break
            c.last = clock()

        task = asyncio.create_task(count())
        seen = -1
        while not task.done():
            await asyncio.wait({task}, timeout=IDLE_S)
            if c.n == seen:
                task.cancel()
                break
            seen = c.n
        if c.n and not c.last:
            c.last = time.perf_counter()
    return c.result(expected)


def _paho_drain(port: int, qos: int, client_id: str, expected: int, prime: bool) -> dict[str, Any]:
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = _Counter(expected)
    lo, hi = c.marks
    done, subscribed = threading.Event(), threading.Event()
    clock = time.perf_counter

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe([(SUBSCRIPTION, qos), (SIM_CLOCK_TOPIC, qos)])

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, msg: Any) -> None:
        c.n += 1
        n = c.n
        if n == 1:
            c.first = clock()
        if n in (lo, hi):
            c.times[n] = clock()
        if n >= expected:
            c.last = clock()
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        if prime:
            subscribed.wait(10)
            return {}
        seen = -1
        while not done.wait(IDLE_S):
            if c.n == seen:
                break
            seen = c.n
        if c.n and not c.last:
            c.last = clock()
        return c.result(expected)
    finally:
        client.disconnect()
        client.loop_stop()


def consume_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="ingest_throughput.py --consume")
    ap.add_argument("--consume", choices=["aiomqtt", "paho"], required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--qos", type=int, required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--expect", type=int, default=0)
    ap.add_argument("--prime", action="store_true", help="subscribe with a persistent session and leave")
    a = ap.parse_args(argv)
    if a.consume == "aiomqtt":
        out = asyncio.run(_aiomqtt_drain(a.port, a.qos, a.client_id, a.expect, a.prime))
    else:
        out = _paho_drain(a.port, a.qos, a.client_id, a.expect, a.prime)
    print(json.dumps(out))
    return 0


def _bare(kind: str, port: int, qos: int, client_id: str, expected: int = 0, prime: bool = False) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--consume", kind, "--port", str(port), "--qos", str(qos),
            "--client-id", client_id, "--expect", str(expected)] + (["--prime"] if prime else [])  # fmt: skip
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} consumer failed ({r.returncode}):\n{r.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def _mosquitto_sub(
    port: int, qos: int, client_id: str, workdir: Path, expected: int = 0, prime: bool = False
) -> dict[str, Any]:
    """mosquitto_sub draining the same queue: the C client's rate is the machine's ceiling."""
    binary = shutil.which("mosquitto_sub")
    if binary is None:
        raise RuntimeError("mosquitto_sub is missing: `apt-get install -y mosquitto-clients` (make bench does)")
    argv = [binary, "-h", "127.0.0.1", "-p", str(port), "-i", client_id, "-c", "-q", str(qos),
            "-t", SUBSCRIPTION, "-t", SIM_CLOCK_TOPIC]  # fmt: skip
    if prime:
        subprocess.run([*argv, "-E"], check=True, timeout=30, capture_output=True)
        return {}
    out = workdir / f"{client_id}.out"
    t = time.perf_counter()
    with out.open("wb") as f:
        # One byte and a newline per message; -W: give up when nothing more comes.
        until = ["-C", str(expected), "-W", str(int(IDLE_S)), "-F", "x"]
        subprocess.run([*argv, *until], stdout=f, timeout=600, check=False)
    took = time.perf_counter() - t
    received = out.stat().st_size // 2
    out.unlink()
    return {"received": received, "rate": received / took if received == expected else 0.0, "seconds": took}


# --- the service ----------------------------------------------------------------------------------------


def _service_drain(svc: ServiceProcess, expected: int, before: int, profile: Path | None) -> Drain:
    """Resume the paused service and follow its ingest counters until it has `before + expected`."""
    svc.resume()
    spy = _start_py_spy(svc.pid, profile) if profile else None
    samples: list[tuple[float, int]] = [(time.perf_counter(), 0)]
    counters: dict[str, Any] = {}
    last_change = time.perf_counter()
    poll = 0.2  # each /healthz costs the service ~2 ms
    try:
        while True:
            time.sleep(poll)
            now = time.perf_counter()
            try:
                counters = svc.ingest()
            except OSError:  # /healthz did not answer in time: the loop is busy; that is a finding, keep going
                continue
            n = int(counters.get("received", 0)) - before
            if n != samples[-1][1]:
                samples.append((now - poll / 2, n))  # the update happened since the previous poll
                last_change = now
            if n >= expected or now - last_change > IDLE_S:
                break
    finally:
        if spy is not None:
            _stop_py_spy(spy)
    received = samples[-1][1]
    first = next((t for t, n in samples if n > 0), samples[-1][0])
    return Drain(
        "crowdflow serve",
        expected,
        received,
        _rate_between(samples, expected),
        samples[-1][0] - first,
        accepted=int(counters.get("accepted", 0)),
        rejected=svc.rejected(counters),
    )


def _handle_cost(config: Path, site_path: Path, n: int, workdir: Path) -> float:
    """µs per message of Pipeline.handle alone (decode, validate, sequence, apply, ticks), in this process,
    on the same feed: what the service spends per message besides receiving it. CPU time of this thread
    (time.thread_time), not wall time: on a shared machine the wall clock also counts the time other
    processes had the core."""
    from crowdflow.config import load_config
    from crowdflow.service import Service

    cfg = load_config(config)
    cfg.service.data_dir = str(workdir / "in-process")
    service = Service(cfg, quiet=True)
    feed = ReadingFeed(load_site(site_path))
    size = len(feed)
    handle, now = service.pipeline.handle, time.time
    batch = []
    took = 0.0
    try:
        for start in range(0, n, 10_000):  # payloads made outside the timed part, 10,000 at a time
            ts = now()
            batch = [feed.message(i % size, ts)[:2] for i in range(start, min(n, start + 10_000))]
            t = time.thread_time()
            for topic, payload in batch:
                handle(topic, payload, now())
            took += time.thread_time() - t
        accepted = service.pipeline.ingestor.stats.accepted
    finally:
        service.journal.close()
        service.store.close()
    if accepted != n:
        raise RuntimeError(f"in-process pipeline accepted {accepted} of {n} readings")
    return took / n * 1e6


def _settled_counters(svc: ServiceProcess) -> dict[str, Any]:
    """The ingest counters once they stop moving (they are updated once a second)."""
    last = svc.ingest()
    while True:
        time.sleep(1.2)
        now = svc.ingest()
        if now == last:
            return now
        last = now


def _start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(binary).exists():
        print("py-spy not found (pip install py-spy into the venv); no profile", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    # Blocking mode (the default: the process is paused for each sample): consistent stacks at some cost.
    argv = [binary, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    import signal

    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()


def _publish(port: int, qos: int, feed: ReadingFeed, n: int) -> float:
    """Publish n readings (every sensor in turn) and wait until the broker has them all; msgs/s."""
    sink = MqttSink("127.0.0.1", port, qos=qos, window=5000, client_id=f"bench-feed-q{qos}")
    t = time.perf_counter()
    size = len(feed)
    ts = time.time()
    for i in range(n):
        if i % 1000 == 0:
            ts = time.time()
        topic, payload, _ = feed.message(i % size, ts)
        sink.publish(topic, payload)
    sink.close(drain_s=120)  # DISCONNECT after the last: the broker has read everything before it
    return n / (time.perf_counter() - t)


def run_size(
    workdir: Path, port: int, size: int, qoss: list[int], n: int, profile: Path | None, err: TextIO
) -> list[dict[str, Any]]:
    """One service for the size; per QoS: pause it, publish n, resume it and time the drain; then the bare
    consumers drain the same n from their persistent sessions, one after the other."""
    site_path = write_scaled_site(size, workdir / f"site-{size}.toml")
    feed = ReadingFeed(load_site(site_path))
    ids = {"aiomqtt": f"bench-aio-{size}", "paho": f"bench-paho-{size}", "mosquitto_sub": f"bench-c-{size}"}
    # Every consumer subscribes at QoS 1; a message published at QoS 0 is delivered at QoS 0.
    _bare("aiomqtt", port, 1, ids["aiomqtt"], prime=True)
    _bare("paho", port, 1, ids["paho"], prime=True)
    _mosquitto_sub(port, 1, ids["mosquitto_sub"], workdir, prime=True)
    svc = new_service(workdir, f"svc-{size}", mqtt_port=port, site=site_path, qos=1)
    print(f"  {size:,} sensors: starting crowdflow serve...", file=err, flush=True)
    t = time.perf_counter()
    svc.start()
    startup_s = time.perf_counter() - t
    rss_mb = svc.rss_kb() / 1024
    print(f"    subscribed after {startup_s:.1f} s, RSS {rss_mb:,.0f} MB", file=err, flush=True)
    results = []
    try:
        for qos in qoss:
            before = _settled_counters(svc)
            svc.pause()
            print(f"    QoS {qos}: publishing {n:,} readings while the service is paused...", file=err, flush=True)
            pub_rate = _publish(port, qos, feed, n)
            print(f"    published at {pub_rate:,.0f} msg/s; service draining...", file=err, flush=True)
            prof = profile / f"service-{size}-q{qos}.txt" if profile else None
            service = _service_drain(svc, n, int(before.get("received", 0)), prof)
            after = _settled_counters(svc)
            service.received = int(after.get("received", 0)) - int(before.get("received", 0))
            service.accepted = int(after.get("accepted", 0)) - int(before.get("accepted", 0))
            service.rejected = svc.rejected(after) - svc.rejected(before)
            print(f"    service {service.rate:,.0f} msg/s; bare consumers draining...", file=err, flush=True)
            drains = {"service": service}
            for kind in ("aiomqtt", "paho"):
                r = _bare(kind, port, 1, ids[kind], expected=n)
                drains[kind] = Drain(f"bare {kind}", n, int(r["received"]), float(r["rate"]), float(r["seconds"]))
            r = _mosquitto_sub(port, 1, ids["mosquitto_sub"], workdir, expected=n)
            drains["mosquitto_sub"] = Drain(
                "mosquitto_sub (C)", n, int(r["received"]), float(r["rate"]), float(r["seconds"])
            )
            results.append({"sensors": size, "qos": qos, "messages": n, "published_per_s": pub_rate, "drains": drains,
                            "startup_s": startup_s, "rss_mb": svc.rss_kb() / 1024})  # fmt: skip
    finally:
        svc.stop()
    us = None
    if startup_s <= HANDLE_COST_MAX_STARTUP_S:
        us = _handle_cost(svc.config, site_path, n, workdir / f"svc-{size}")
        print(f"    Pipeline.handle alone: {us:.1f} µs per message", file=err, flush=True)
    for r in results:
        r["handle_us"] = us
    return results


def run(
    sizes: list[int],
    qoss: list[int],
    n: int,
    *,
    out: TextIO,
    err: TextIO,
    profile: Path | None = None,
    workdir: Path | None = None,
) -> dict[str, str]:
    print_machine(out)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cf-ingest-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with broker(work / "broker") as srv:
            for size in sizes:
                results += run_size(work, srv.port, size, qoss, n, profile, err)
    head = f"{'sensors':>8} {'QoS':>3}  {'consumer':<18} {'msg/s':>8} {'received':>9} {'lost':>5}  vs bare aiomqtt"
    print(f"\n{head}", file=out)
    for res in results:
        bare = res["drains"]["aiomqtt"].rate
        for d in res["drains"].values():
            ratio = f"{d.rate / bare:.2f}" if bare else "-"
            extra = f"  accepted {d.accepted:,}, rejected {d.rejected}" if d.accepted is not None else ""
            row = f"{res['sensors']:>8,} {res['qos']:>3}  {d.consumer:<18} {d.rate:>8,.0f} {d.received:>9,} {d.lost:>5}"
            print(f"{row}  {ratio}{extra}", file=out)
    for size in sizes:
        first = next(r for r in results if r["sensors"] == size)
        us = first["handle_us"]
        alone = "not timed (slow start)" if us is None else f"{us:.1f} µs/msg (one core: {1e6 / us:,.0f} msg/s)"
        print(f"service at {size:,} sensors: subscribed {first['startup_s']:.1f} s after start, "
              f"RSS {first['rss_mb']:,.0f} MB; Pipeline.handle alone {alone}", file=out)  # fmt: skip
    return _figures(results, out)


def _figures(results: list[dict[str, Any]], out: TextIO) -> dict[str, str]:
    figs: dict[str, str] = {}
    lost = sum(r["drains"]["service"].lost for r in results)
    rejected = sum(r["drains"]["service"].rejected or 0 for r in results)
    bare_lost = sum(r["drains"][k].lost for r in results for k in ("aiomqtt", "paho", "mosquitto_sub"))
    for qos in sorted({r["qos"] for r in results}):
        rows = [r for r in results if r["qos"] == qos]

        def ratio(r: dict[str, Any]) -> float:
            bare = float(r["drains"]["aiomqtt"].rate)
            return float(r["drains"]["service"].rate) / bare if bare else 0.0

        worst = min(rows, key=ratio)
        d = worst["drains"]
        suffix = "" if qos == 1 else "_qos0"
        figs[f"ingest_qos{qos}_msgs_per_s"] = f"{d['service'].rate:.0f}"
        figs[f"bare_qos{qos}_msgs_per_s"] = f"{d['aiomqtt'].rate:.0f}"
        figs[f"paho_qos{qos}_msgs_per_s"] = f"{d['paho'].rate:.0f}"
        figs[f"c_qos{qos}_msgs_per_s"] = f"{d['mosquitto_sub'].rate:.0f}"
        figs[f"ratio{suffix}"] = f"{ratio(worst):.2f}"
        figs[f"sensors{suffix}"] = str(worst["sensors"])
    figs["rejected"] = str(rejected)
    figs["bare_lost"] = str(bare_lost)
    figs["lost"] = str(lost)
    print(f"\nheadline: per QoS, the size with the lowest ratio; lost = {lost} (service), {bare_lost} (bare)", file=out)
    print(kv_line(figs), file=out)
    return figs


def handle_only(sizes: list[int], n: int, out: TextIO) -> int:
    """Pipeline.handle alone per size (the figure the full run prints after each size), without the drains."""
    print_machine(out)
    figs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cf-ingest-") as tmp:
        work = Path(tmp)
        for size in sizes:
            site_path = write_scaled_site(size, work / f"site-{size}.toml")
            svc = new_service(work, f"svc-{size}", mqtt_port=free_port(), site=site_path, qos=1)
            us = _handle_cost(svc.config, site_path, n, work / f"svc-{size}")
            print(f"{size:>8,} sensors: Pipeline.handle alone {us:.1f} µs CPU per message ({n:,} readings, "
                  f"{n / size:g} per sensor)", file=out)  # fmt: skip
            figs[f"handle_us_{size}"] = f"{us:.1f}"
    print(kv_line(figs), file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--consume" in argv:
        return consume_main(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="sensor counts")
    ap.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    ap.add_argument("--messages", type=int, default=MESSAGES, help="readings per size and QoS")
    ap.add_argument("--quick", action="store_true", help="seconds: 300 sensors, QoS 1, 6,000 readings")
    ap.add_argument("--profile", type=Path, help="directory for py-spy raw profiles of the service")
    ap.add_argument("--workdir", type=Path, help="keep the sites, configs and logs here (default: a temp dir)")
    ap.add_argument(
        "--handle-only",
        action="store_true",
        help="no broker: only Pipeline.handle's CPU time per message, in this process, per size",
    )
    a = ap.parse_args(argv)
    if a.handle_only:
        return handle_only(a.sizes, a.messages, sys.stdout)
    if a.quick:
        a.sizes, a.qos, a.messages = [300], [1], 6_000
    figs = run(a.sizes, a.qos, a.messages, out=sys.stdout, err=sys.stderr, profile=a.profile, workdir=a.workdir)
    return 0 if figs["lost"] == "0" and figs["rejected"] == "0" else 1


if __name__ == "__main__":
    sys.exit(main())
