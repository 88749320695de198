"""Ingest in more than one process (issue 6, stretch): does partitioning the zones across N ingest processes
drain a backlog faster than one process, on this machine, with the service's own per-message path?

Every piece of state is keyed by zone and a sensor's topic names its zone (`dt/crowdflow/<grid>/<zone>/...`),
so N processes can each subscribe to their zones' topic filters only (`dt/crowdflow/<grid>/<zone>/#`) and
never see another's readings. Each worker process here is the service's ingest as `crowdflow serve` builds
it: `crowdflow.service.Service` (its Pipeline, store, alert manager, hub and MQTT publisher, from a
benchmark config as benchmarks/_common.py writes it) on a site holding every zone but only the partition's
sensors, fed by `ingest.mqtt.subscribe_forever` (batched reads, QoS 1 acknowledged after the handler) calling
`Pipeline.handle`, with a ticker calling `Pipeline.maybe_tick` once a second as the service's does, and the
live path (zones with new readings recomputed every live_s between ticks). What a worker leaves out is what
would stay in one process in a partitioned deployment: the dashboard's HTTP server, the push process and the
notification dispatcher.

How it measures, per site size (the Lujiazui site scaled to 10,000 and 50,000 sensors, 35 zones unchanged,
benchmarks/scaled_site.py), QoS 1, on one private Mosquitto (benchmarks/_common.py's BROKER_CONF):
1. Zones are split into N partitions of about equal sensor counts (largest zone first into the lightest
   partition). Every consumer gets a persistent session (own client id; the workers their partition's
   filters, the others the service's `dt/crowdflow/#`) and goes away: one worker on all zones (N = 1), N = 2
   and 3 workers, a bare aiomqtt and a bare paho counting subscriber and mosquitto_sub (C: the machine's
   ceiling), the last three from benchmarks/ingest_throughput.py.
2. `--messages` valid readings (every sensor in turn) are published at QoS 1 and queued by the broker for
   every session.
3. One consumer set at a time drains its queue while the others are idle: the N workers are told to start
   at the same moment and drain concurrently. Rate = readings / (last reading received by any of the set -
   first reading received by any), and, as ingest_throughput.py reports, between 10% and 90% of the feed (for
   a set, of the sum of its workers' counts over time). Around each drain the broker's CPU time
   (/proc/<pid>/stat; it idles between drains, so its seconds over the drain's duration are its cores during
   it), the workers' own CPU time (every thread) and the whole machine's busy share (/proc/stat) are read:
   Mosquitto is one thread, so 1.00 core is its ceiling; the machine's cores are shared by everything on it.
`lost` = readings published for a consumer's topics - readings its handler got; a worker's ingestor must
also have accepted every one (nothing rejected: a reading delivered twice would be rejected as a duplicate).
After its last reading a worker stays connected for ACK_FLUSH_S, outside the timing, so that its last
acknowledgements reach the broker before the next round.

Usage:
    .venv/bin/python benchmarks/ingest_partitioned.py            # 10,000 and 50,000 sensors, N = 1, 2, 3, 3 rounds
    .venv/bin/python benchmarks/ingest_partitioned.py --sizes 10000 --procs 2 --rounds 5 --messages 200000
    .venv/bin/python benchmarks/ingest_partitioned.py --quick    # seconds: 300 sensors, N = 1, 2, 6,000 readings

Steps 2 and 3 are repeated `--rounds` times (the consumers' order moves by one each round, so drift in the
machine's load does not always fall on the same one); ratios are taken within a round, then their median.
Prints each round's rates, a table of medians, and ends with one line of key=value pairs (per size and set:
msg/s, its ratio to bare aiomqtt and to bare paho, the speed-up over one worker, the broker's and the
workers' CPU in cores during its drain).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402

from benchmarks._common import ReadingFeed, broker, kv_line, print_machine, write_config  # noqa: E402
from benchmarks.ingest_throughput import IDLE_S, _bare, _mosquitto_sub, _publish, _rate_between  # noqa: E402
from benchmarks.scaled_site import write_scaled_site  # noqa: E402
from domain.loader import load_site  # noqa: E402
from domain.messages import TOPIC_PREFIX  # noqa: E402
from domain.site import Site  # noqa: E402
from ingest.mqtt import MqttSettings  # noqa: E402
from tests.servers import free_port  # noqa: E402

if TYPE_CHECKING:
    from crowdflow.service import Service

SIZES = (10_000, 50_000)
PROCS = (2, 3)  # partitioned sets measured beside the one-process worker
MESSAGES = 100_000
ROUNDS = 3  # each consumer drains the feed this many times; the report gives medians
QOS = 1
SAMPLE_EVERY = 500  # a worker notes (time, count) this often; the 10%-90% rate of a set is read from them
ACK_FLUSH_S = 0.5  # connected this long after a drain, so every acknowledgement reaches the broker
WORKER_START_S = 600.0  # building a worker's Service (seconds at 50,000 sensors) and priming its session


# --- partitions -------------------------------------------------------------------------------------------


def partition_zones(site: Site, n: int) -> list[list[str]]:
    """The site's zones in n groups of about equal sensor counts (each group in site order). Greedy: the zone
    with the most sensors goes to the group with the fewest so far."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > len(site.zones):
        raise ValueError(f"{n} partitions for {len(site.zones)} zones: some would be empty")
    order = list(site.zones)
    by_size = sorted(order, key=lambda z: (-len(site.sensors_of(z)), order.index(z)))
    groups: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for z in by_size:
        k = loads.index(min(loads))
        groups[k].append(z)
        loads[k] += len(site.sensors_of(z))
    return [sorted(g, key=order.index) for g in groups]


def zone_filters(site: Site, zones: list[str]) -> list[str]:
    """The MQTT topic filters of these zones' sensors (docs/messages.md: <prefix>/<grid>/<zone>/<sensor>/<kind>)."""
    return [f"{TOPIC_PREFIX}/{site.zones[z].grid}/{z}/#" for z in zones]


def partition_site(site: Site, zones: list[str]) -> Site:
    """The site with every zone (the profile, neighbours and visit shares stay whole) but only these zones'
    sensors: what a partition's ingest and detection keep state for."""
    mine = set(zones)
    spec = msgspec.structs.replace(site.file, sensors=tuple(s for s in site.file.sensors if s.zone in mine))
    return Site(spec, site.path)


def split_neighbours(site: Site, groups: list[list[str]]) -> tuple[int, int]:
    """(neighbouring zone pairs in different partitions, all neighbouring pairs): sensor health compares a
    sensor with its zone's and the neighbouring zones' sensors, which a partition only sees for its own zones."""
    owner = {z: k for k, g in enumerate(groups) for z in g}
    pairs = {frozenset((z.id, n)) for z in site.zones.values() for n in z.neighbours}
    return sum(1 for p in pairs if len({owner[z] for z in p}) > 1), len(pairs)


def readings_per_zone(feed: ReadingFeed, n: int) -> Counter[str]:
    """How many of the first n readings of the feed (every sensor in turn) fall in each zone."""
    size = len(feed)
    out: Counter[str] = Counter()
    for i, s in enumerate(feed.sensors):
        out[s.zone] += n // size + (1 if i < n % size else 0)
    return out


# --- a worker (a child process: `--worker SPEC.json`) -----------------------------------------------------


@dataclass
class _Progress:
    """What a worker's handler counts: a few hundred ns per message on top of Pipeline.handle."""

    expect: int
    n: int = 0
    first: float = 0.0
    last: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)


async def _worker(spec: dict[str, Any]) -> None:
    """Build the partition's Service, prime its session, say "ready"; then one drain per "go" on stdin, its
    result as one JSON line on stdout, until "quit"."""
    from crowdflow.config import load_config
    from crowdflow.service import Service

    cfg = load_config(Path(spec["config"]))
    full = load_site(spec["site"])
    zones: list[str] = spec["zones"]
    site = full if len(zones) == len(full.zones) else partition_site(full, zones)
    topics: list[str] = spec["topics"]
    service = Service(cfg, site=site, quiet=True)
    settings: MqttSettings = service.mqtt
    # The live path (zones with new readings pushed every live_s between ticks) is scheduled on the loop the
    # service records in run(); a worker does not call run(), so it records it here, or that path would not run.
    if hasattr(service, "_loop"):
        service._loop = asyncio.get_running_loop()
    try:
        # The persistent session, subscribed to this partition's filters, then away: the feed queues for it.
        async with settings.client(client_id=settings.client_id, clean_session=False) as client:
            await client.subscribe([(t, settings.qos) for t in topics])
        _say("ready")
        while (line := (await asyncio.to_thread(sys.stdin.readline)).strip()) != "quit":
            if line != "go":
                raise SystemExit(f"worker: expected 'go' or 'quit' on stdin, got {line!r}")
            _say(json.dumps(await _drain_once(service, topics, int(spec["expect"]))))
    finally:
        service.journal.close()
        service.store.close()


async def _drain_once(service: Service, topics: list[str], expect: int) -> dict[str, Any]:
    """Connect (the same persistent session), take `expect` readings through Pipeline.handle, disconnect."""
    from ingest.mqtt import subscribe_forever

    settings = service.mqtt
    progress = _Progress(expect=expect)
    stop = asyncio.Event()
    handle = service.pipeline.handle
    clock = time.monotonic
    st = service.pipeline.ingestor.stats
    accepted0, rejected0 = int(st.accepted), sum(int(v) for v in dict(st.rejected).values())
    errors0 = service.subscriber_stats.handler_errors

    done = asyncio.Event()
    cpu_end = t_end = 0.0
    machine_end: list[int] = []  # the machine's busy and total jiffies when the last reading came

    def counting(topic: str, payload: bytes, received_at: float) -> None:
        nonlocal cpu_end, t_end
        handle(topic, payload, received_at)
        progress.n += 1
        n = progress.n
        if n == 1:
            progress.first = clock()
        if n % SAMPLE_EVERY == 0 or n == progress.expect:
            progress.last = clock()
            progress.samples.append((progress.last, n))
            if n == progress.expect:
                cpu_end, t_end, machine_end[:] = time.process_time(), progress.last, CpuMeter.machine()
                done.set()

    t_go, cpu0, machine_go = clock(), time.process_time(), CpuMeter.machine()
    tasks = [
        asyncio.create_task(
            subscribe_forever(settings, topics, counting, stop=stop, clock=service.wall, stats=service.subscriber_stats)
        ),
        asyncio.create_task(_ticker(service.pipeline.maybe_tick, stop)),
        asyncio.create_task(service.publisher.run(_publisher_settings(settings), stop)),
    ]
    seen = -1
    while not done.is_set():  # until every reading of this partition came, or nothing for IDLE_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=IDLE_S)
        if progress.n == seen:
            cpu_end, t_end, machine_end[:] = time.process_time(), clock(), CpuMeter.machine()
            break
        seen = progress.n
    # Stay connected a moment: the last batch's acknowledgements are queued on the socket; a disconnect right
    # away can drop some, and the broker would deliver those readings again at the next round's connect.
    await asyncio.sleep(ACK_FLUSH_S)
    stop.set()
    cpu = cpu_end - cpu0
    if progress.n and not progress.last:
        progress.last = clock()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "expected": expect,
        "received": progress.n,
        "accepted": int(st.accepted) - accepted0,
        "rejected": sum(int(v) for v in dict(st.rejected).values()) - rejected0,
        "handler_errors": service.subscriber_stats.handler_errors - errors0,
        "first": progress.first,
        "last": progress.last,
        "samples": progress.samples,
        "cpu_s": cpu,  # every thread of the worker (the store's too), from "go" to its last reading
        "cpu_wall_s": t_end - t_go,
        "left_at_stop": service.subscriber_stats.left_at_stop,
        "machine_go": list(machine_go),
        "machine_end": machine_end,
    }


def _publisher_settings(settings: MqttSettings) -> MqttSettings:
    """The service's publisher connects as <client id>-out (crowdflow/service.py); so does a worker's."""
    return dataclasses.replace(settings, client_id=f"{settings.client_id}-out")


async def _ticker(maybe_tick: Callable[[], None], stop: asyncio.Event) -> None:
    """Pipeline.maybe_tick once a second, as the service's ticker does (ticks also run from handle)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        maybe_tick()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def worker_main(spec_path: Path) -> int:
    asyncio.run(_worker(json.loads(spec_path.read_text(encoding="utf-8"))))
    return 0


# --- the parent: starting workers, timing sets ------------------------------------------------------------


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[str]
    log: Path
    expect: int

    def line(self, timeout_s: float) -> str:
        """The worker's next stdout line; fails with its log if it exits or says nothing in time."""
        stdout = self.proc.stdout
        assert stdout is not None
        import select

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 1.0)
            if ready:
                text = stdout.readline()
                if text:
                    return text.strip()
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"worker {self.name} said nothing (exit {self.proc.poll()}):\n{_tail(self.log)}")

    def stop(self) -> None:
        """"quit" (it closes its store and journal), then terminate, then kill."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            for ask in (self.proc.terminate, self.proc.kill):
                try:
                    self.proc.wait(30)
                    return
                except subprocess.TimeoutExpired:
                    ask()
            self.proc.wait(5)


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return ""


def start_worker(
    workdir: Path, name: str, *, port: int, site_path: Path, zones: list[str], topics: list[str], expect: int
) -> Worker:
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    cfg = write_config(
        data / "crowdflow.toml", mqtt_port=port, http_port=free_port(), site=site_path,
        data_dir=data / "var", client_id=f"bench-{name}", qos=QOS,
    )  # fmt: skip
    spec = {"config": str(cfg), "site": str(site_path), "zones": zones, "topics": topics, "expect": expect}
    spec_path = data / "worker.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    log = data / "worker.log"
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(spec_path)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    return Worker(name, proc, log, expect)


@dataclass
class Drain:
    consumer: str
    procs: int  # workers in the set (1 for the bare consumers)
    round: int
    expected: int
    received: int
    rate: float  # readings / (last received - first received), over the whole set
    rate_mid: float  # between LOW and HIGH of the feed
    seconds: float
    broker_cpu: float  # cores used by the broker during the drain (1.00: its one thread is busy all the time)
    consumer_cpu: float | None  # cores used by the consumers (workers only: their own process time)
    # Share of all cores busy (everything on the machine) from "go" until the set's last reading; for the bare
    # consumers from their child process's start to its exit, its imports included (a few tenths of a second).
    machine_busy: float
    broker_us: float  # the broker's CPU per reading delivered, µs
    worker_us: float | None  # the workers' CPU per reading handled, µs (all their threads)
    accepted: int | None = None
    rejected: int | None = None

    @property
    def lost(self) -> int:
        return self.expected - self.received


class CpuMeter:
    """CPU seconds of the broker and of the whole machine between start() and stop()."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, broker_pid: int) -> None:
        self.pid = broker_pid
        self.b0 = 0.0
        self.m0 = (0, 0)

    def _broker_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.TICK  # utime, stime (fields 14 and 15 of stat)

    @staticmethod
    def machine() -> tuple[int, int]:
        """(busy, total) jiffies of all cores since boot, from /proc/stat."""
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]) - idle, sum(values[:8])

    def start(self) -> None:
        self.b0, self.m0 = self._broker_s(), self.machine()

    def stop(self) -> tuple[float, float]:
        """(broker CPU seconds, machine busy share) since start(). The broker is idle outside a drain, so its
        seconds over the drain's own duration are its cores during the drain."""
        broker_s = self._broker_s() - self.b0
        busy, total = self.machine()
        d_total = total - self.m0[1]
        return broker_s, (busy - self.m0[0]) / d_total if d_total else 0.0


def _set_rate_mid(results: list[dict[str, Any]], expected: int) -> float:
    """Msgs/s between LOW and HIGH of `expected`, from the sum of the workers' counts over time (each worker's
    count interpolated linearly between its samples, flat after its last)."""
    series: list[list[tuple[float, int]]] = [
        [(float(r["first"]), 1), *[(float(t), int(n)) for t, n in r["samples"]]] for r in results if r["received"]
    ]
    if not series:
        return 0.0
    times = sorted({t for s in series for t, _ in s})

    def count_at(s: list[tuple[float, int]], t: float) -> float:
        if t < s[0][0]:
            return 0.0
        for (t0, n0), (t1, n1) in itertools.pairwise(s):
            if t0 <= t <= t1:
                return n0 + (n1 - n0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)
        return float(s[-1][1])

    return _rate_between([(t, sum(count_at(s, t) for s in series)) for t in times], expected)


def drain_set(label: str, workers: list[Worker], meter: CpuMeter, rnd: int) -> Drain:
    """Start every worker of the set at once; wait until each has drained its partition."""
    meter.start()
    for w in workers:
        assert w.proc.stdin is not None
        w.proc.stdin.write("go\n")
        w.proc.stdin.flush()
    results = [json.loads(w.line(timeout_s=600)) for w in workers]
    broker_s, _ = meter.stop()
    # The machine's busy share from the first worker's start to the last one's last reading (not the pause
    # each worker takes before disconnecting).
    go = min((r["machine_go"] for r in results), key=lambda m: m[1])
    end = max((r["machine_end"] for r in results), key=lambda m: m[1])
    busy = (end[0] - go[0]) / (end[1] - go[1]) if end[1] > go[1] else 0.0
    expected = sum(w.expect for w in workers)
    received = sum(int(r["received"]) for r in results)
    got = [r for r in results if r["received"]]
    first = min((float(r["first"]) for r in got), default=0.0)
    last = max((float(r["last"]) for r in got), default=0.0)
    seconds = last - first
    return Drain(
        label,
        len(workers),
        rnd,
        expected,
        received,
        received / seconds if seconds > 0 and received == expected else 0.0,
        _set_rate_mid(results, expected),
        seconds,
        broker_s / seconds if seconds > 0 else 0.0,
        sum(float(r["cpu_s"]) for r in results) / max(float(r["cpu_wall_s"]) for r in results),
        busy,
        broker_s / received * 1e6 if received else 0.0,
        sum(float(r["cpu_s"]) for r in results) / received * 1e6 if received else None,
        accepted=sum(int(r["accepted"]) for r in results),
        rejected=sum(int(r["rejected"]) + int(r["handler_errors"]) for r in results),
    )


def drain_bare(
    label: str, kind: str, port: int, client_id: str, expected: int, meter: CpuMeter, work: Path, rnd: int
) -> Drain:
    meter.start()
    if kind == "mosquitto_sub":
        r = _mosquitto_sub(port, QOS, client_id, work, expected=expected)
    else:
        r = _bare(kind, port, QOS, client_id, expected=expected)
    broker_s, busy = meter.stop()
    received, seconds = int(r["received"]), float(r["seconds"])
    broker_cores = broker_s / seconds if seconds > 0 else 0.0
    whole = received / seconds if seconds > 0 and received == expected else 0.0
    mid = float(r["rate"])
    if kind == "mosquitto_sub":
        mid = whole  # it has no 10%-90% marks; its time includes its start (a few ms)
    broker_us = broker_s / received * 1e6 if received else 0.0
    return Drain(label, 1, rnd, expected, received, whole, mid, seconds, broker_cores, None, busy, broker_us, None)


@contextlib.contextmanager
def _workers_stopped(workers: list[Worker]) -> Iterator[list[Worker]]:
    try:
        yield workers
    finally:
        for w in workers:
            w.stop()


def run_size(workdir: Path, port: int, broker_pid: int, size: int, procs: list[int], n: int, rounds: int,
             out: TextIO, err: TextIO) -> list[Drain]:  # fmt: skip
    """One set of workers per N (built once, each with its persistent session); per round: publish n readings,
    then every consumer drains them alone, in an order that moves by one each round (drift in the machine's
    load falls on every consumer in turn)."""
    site_path = write_scaled_site(size, workdir / f"site-{size}.toml")
    site = load_site(site_path)
    feed = ReadingFeed(site)
    per_zone = readings_per_zone(feed, n)
    sets: dict[int, list[list[str]]] = {k: partition_zones(site, k) for k in [1, *procs]}
    ids = {"aiomqtt": f"bench-p-aio-{size}", "paho": f"bench-p-paho-{size}", "mosquitto_sub": f"bench-p-c-{size}"}
    _bare("aiomqtt", port, QOS, ids["aiomqtt"], prime=True)
    _bare("paho", port, QOS, ids["paho"], prime=True)
    _mosquitto_sub(port, QOS, ids["mosquitto_sub"], workdir, prime=True)
    count = sum(len(groups) for groups in sets.values())
    print(f"  {size:,} sensors, {len(site.zones)} zones: starting {count} workers...", file=err, flush=True)
    workers: dict[int, list[Worker]] = {}
    everyone: list[Worker] = []
    drains: list[Drain] = []
    with _workers_stopped(everyone):
        for k, groups in sets.items():
            workers[k] = []
            for j, zones in enumerate(groups):
                # N = 1 subscribes as the service does (one filter for everything); partitions to their zones.
                topics = [f"{TOPIC_PREFIX}/#"] if k == 1 else zone_filters(site, zones)
                w = start_worker(workdir, f"w{size}-{k}of{j + 1}", port=port, site_path=site_path, zones=zones,
                                 topics=topics, expect=sum(per_zone[z] for z in zones))  # fmt: skip
                workers[k].append(w)
                everyone.append(w)
        for w in everyone:
            if (said := w.line(timeout_s=WORKER_START_S)) != "ready":
                raise RuntimeError(f"worker {w.name}: expected 'ready', got {said!r}\n{_tail(w.log)}")
        for k, groups in sets.items():
            shares = ", ".join(
                f"{len(g)} zones/{sum(len(site.sensors_of(z)) for z in g):,} sensors/{sum(per_zone[z] for z in g):,} "
                "readings" for g in groups
            )
            split, pairs = split_neighbours(site, groups)
            print(f"{size:,} sensors, N = {k}: {shares}; {split} of {pairs} neighbouring zone pairs split", file=out)
        meter = CpuMeter(broker_pid)
        consumers: list[int | str] = [*sets, "aiomqtt", "paho", "mosquitto_sub"]
        for rnd in range(1, rounds + 1):
            print(f"    round {rnd}: publishing {n:,} readings at QoS {QOS}...", file=err, flush=True)
            pub_rate = _publish(port, QOS, feed, n)
            print(f"    published at {pub_rate:,.0f} msg/s; draining, one consumer at a time", file=err, flush=True)
            shift = (rnd - 1) % len(consumers)
            for c in consumers[shift:] + consumers[:shift]:
                if isinstance(c, int):
                    d = drain_set(_label(c), workers[c], meter, rnd)
                else:
                    d = drain_bare(_label(c), c, port, ids[c], n, meter, workdir, rnd)
                drains.append(d)
                print(f"      {d.consumer}: {d.rate:,.0f} msg/s, lost {d.lost}", file=err, flush=True)
    return drains


def _label(c: int | str) -> str:
    if isinstance(c, int):
        return "crowdflow worker x1 (all zones)" if c == 1 else f"crowdflow workers x{c} (zones split)"
    return {"aiomqtt": "bare aiomqtt", "paho": "bare paho", "mosquitto_sub": "mosquitto_sub (C)"}[c]


# --- report -----------------------------------------------------------------------------------------------


def _limit(broker: float, busy: float, workers: float | None, procs: int, cores: int) -> str:
    """Which side ran out: the broker's one thread, the machine's cores, or the workers themselves."""
    if broker >= 0.9:
        return "broker (its one core)"
    if busy >= 0.9:
        return f"CPU (all {cores} cores busy)"
    if workers is not None and workers >= 0.9 * procs:
        return "workers (a core each)"
    return "-"


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def report(results: dict[int, list[Drain]], out: TextIO) -> dict[str, str]:
    """Per round, every consumer's rate; then per consumer the medians over rounds (ratios are taken within a
    round, side by side, then their median)."""
    cores = os.cpu_count() or 0
    figs: dict[str, str] = {}
    lost = rejected = bare_lost = 0
    for size, drains in results.items():
        rounds = sorted({d.round for d in drains})
        set_sizes = sorted({d.procs for d in drains if d.consumer_cpu is not None})
        labels = [*(_label(k) for k in set_sizes), _label("aiomqtt"), _label("paho"), _label("mosquitto_sub")]
        at = {(d.consumer, d.round): d for d in drains}
        print(f"\n{size:,} sensors, msg/s per round (readings / first to last reading received):", file=out)
        print(f"  {'consumer':<34} " + " ".join(f"{'round ' + str(r):>9}" for r in rounds), file=out)
        for label in labels:
            print(f"  {label:<34} " + " ".join(f"{at[label, r].rate:>9,.0f}" for r in rounds), file=out)
        head = (
            f"  {'consumer (median of rounds)':<34} {'msg/s':>8} {'10-90%':>8} {'lost':>5} {'vs aiomqtt':>10} "
            f"{'vs paho':>8} {'x one':>6} {'broker':>7} {'workers':>8} {'machine':>8} {'brk µs':>7} "
            f"{'wrk µs':>7}  limit"
        )
        print(head, file=out)
        one_label = labels[0]
        for label in labels:
            ds = [at[label, r] for r in rounds]

            def med(values: list[float]) -> float:
                return statistics.median(values)

            rate, mid = med([d.rate for d in ds]), med([d.rate_mid for d in ds])
            vs_bare = med([_ratio(at[label, r].rate, at[_label("aiomqtt"), r].rate) for r in rounds])
            vs_paho = med([_ratio(at[label, r].rate, at[_label("paho"), r].rate) for r in rounds])
            x_one = med([_ratio(at[label, r].rate, at[one_label, r].rate) for r in rounds])
            broker_cores, busy = med([d.broker_cpu for d in ds]), med([d.machine_busy for d in ds])
            cpus = [d.consumer_cpu for d in ds if d.consumer_cpu is not None]
            workers = med(cpus) if cpus else None
            broker_us = med([d.broker_us for d in ds])
            wus = [d.worker_us for d in ds if d.worker_us is not None]
            worker_us = med(wus) if wus else None
            lost_here = sum(d.lost for d in ds)
            is_set = workers is not None
            print(f"  {label:<34} {rate:>8,.0f} {mid:>8,.0f} {lost_here:>5} {vs_bare:>10.2f} {vs_paho:>8.2f} "
                  f"{(f'{x_one:.2f}' if is_set else ''):>6} {broker_cores:>7.2f} "
                  f"{(f'{workers:.2f}' if workers is not None else ''):>8} {busy:>8.0%} {broker_us:>7.1f} "
                  f"{(f'{worker_us:.1f}' if worker_us is not None else ''):>7}  "
                  f"{_limit(broker_cores, busy, workers, ds[0].procs, cores)}", file=out)  # fmt: skip
            if is_set:
                k = ds[0].procs
                lost += lost_here
                rejected += sum((d.rejected or 0) + (d.received - (d.accepted or 0)) for d in ds)
                figs[f"p{k}_msgs_per_s_{size}"] = f"{rate:.0f}"
                figs[f"p{k}_vs_bare_{size}"] = f"{vs_bare:.2f}"
                figs[f"p{k}_vs_paho_{size}"] = f"{vs_paho:.2f}"
                figs[f"p{k}_speedup_{size}"] = f"{x_one:.2f}"
                figs[f"p{k}_broker_cpu_{size}"] = f"{broker_cores:.2f}"
                figs[f"p{k}_workers_cpu_{size}"] = f"{workers:.2f}"
                figs[f"p{k}_broker_us_{size}"] = f"{broker_us:.1f}"
                figs[f"p{k}_worker_us_{size}"] = f"{worker_us:.1f}" if worker_us is not None else "0"
            else:
                bare_lost += lost_here
                key = {"bare aiomqtt": "bare", "bare paho": "paho"}.get(label, "c")
                figs[f"{key}_msgs_per_s_{size}"] = f"{rate:.0f}"
                figs[f"{key}_broker_cpu_{size}"] = f"{broker_cores:.2f}"
                figs[f"{key}_broker_us_{size}"] = f"{broker_us:.1f}"
    print(f"\nmsg/s = readings / (first to last reading received by the consumer, or by any worker of a set); "
          f"10-90% = between 10% and 90% of the feed; vs aiomqtt, vs paho and x one (against one worker on all "
          f"zones) are ratios within a round, then their median; broker = Mosquitto's CPU in cores during the drain "
          f"(1.00 = its one thread busy all the time); workers = the set's CPU in cores (every thread); machine = "
          f"share of all {cores} cores busy (everything on the machine, other work included); brk µs, wrk µs = "
          f"the broker's and the workers' CPU per reading", file=out)  # fmt: skip
    figs["rounds"] = str(len({d.round for ds in results.values() for d in ds}))
    figs["lost"] = str(lost)
    figs["rejected"] = str(rejected)
    figs["bare_lost"] = str(bare_lost)
    print(kv_line(figs), file=out)
    return figs


def run(sizes: list[int], procs: list[int], n: int, rounds: int, *, out: TextIO, err: TextIO,
        workdir: Path | None = None) -> dict[str, str]:  # fmt: skip
    print_machine(out)
    sets = ", ".join(f"{k} workers" for k in procs)
    print(f"QoS {QOS}, {n:,} readings queued per consumer and round, {rounds} round(s); consumers: 1 worker (all "
          f"zones), {sets}, bare aiomqtt, bare paho, mosquitto_sub", file=out)  # fmt: skip
    results: dict[int, list[Drain]] = {}
    with tempfile.TemporaryDirectory(prefix="cf-partitioned-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with broker(work / "broker") as srv:
            for size in sizes:
                results[size] = run_size(work, srv.port, srv.proc.pid, size, procs, n, rounds, out, err)
    return report(results, out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(Path(argv[1]))
    if "--consume" in argv:  # the bare consumers are ingest_throughput.py's own child processes
        from benchmarks.ingest_throughput import consume_main

        return consume_main(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="sensor counts")
    ap.add_argument("--procs", type=int, nargs="+", default=list(PROCS), help="worker counts besides 1")
    ap.add_argument("--messages", type=int, default=MESSAGES, help="readings queued per consumer and round")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="publish-and-drain rounds per size (medians)")
    ap.add_argument("--quick", action="store_true", help="seconds: 300 sensors, N = 1 and 2, 6,000 readings, 2 rounds")
    ap.add_argument("--workdir", type=Path, help="keep the sites, configs and worker logs here")
    a = ap.parse_args(argv)
    if a.quick:
        a.sizes, a.procs, a.messages, a.rounds = [300], [2], 6_000, 2
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    procs = sorted({k for k in a.procs if k > 1})
    figs = run(a.sizes, procs, a.messages, a.rounds, out=sys.stdout, err=sys.stderr, workdir=a.workdir)
    return 0 if figs["lost"] == "0" and figs["rejected"] == "0" and figs["bare_lost"] == "0" else 1


if __name__ == "__main__":
    sys.exit(main())
