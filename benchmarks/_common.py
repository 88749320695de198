"""What the service benchmarks share: a Mosquitto of their own, `crowdflow serve` as a child process (its CPU
and memory are its own), a feed of valid v1 readings for any site, and the machine and key=value lines.

Not a benchmark itself (`make bench` runs it and it does nothing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import platform
import random
import signal
import sys
import tracemalloc
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from domain.messages import CountMsg, DensityMsg, Message, OccupancyMsg, TotalMsg, encode  # noqa: E402
from domain.profile import CapacityProfile  # noqa: E402
from domain.site import Sensor, Site  # noqa: E402
from tests import servers  # noqa: E402
from tests.servers import Server, ServiceError, free_port, start_mosquitto  # noqa: E402

# Every session keeps what arrives while it is away, QoS 0 included, without limit: a consumer can be
# measured alone draining a feed published before it connected (nothing else competes for the 2 cores).
BROKER_CONF = "persistence false\nmax_queued_messages 0\nqueue_qos0_messages true\nmax_inflight_messages 100\n"
# Share of each zone's capacity the anchors report in the steady feed: calm, level normal.
CALM_SHARE = 0.3


def machine() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"nproc": str(os.cpu_count() or 0), "cpu": model or platform.processor(), "loadavg": load}


def print_machine(out: Any = None) -> None:
    m = machine()
    print(f"machine: {m['nproc']} cores, {m['cpu']}, load average {m['loadavg']} (1/5/15 min)", file=out)


def kv_line(figures: Mapping[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in figures.items())


def slope_per(points: list[tuple[float, float]], unit_s: float) -> float:
    """Least-squares slope of (seconds, value) points, per `unit_s` seconds (3600: per hour); 0 with fewer than
    3 points or no spread in time. The RSS slopes of benchmarks/memory.py and benchmarks/soak.py."""
    n = len(points)
    if n < 3:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in points) / var * unit_s


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * len(s) + 0.5) - 1))
    return s[k]


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[Server]:
    srv = start_mosquitto(workdir, extra_conf=BROKER_CONF)
    try:
        yield srv
    finally:
        srv.stop()


# --- the service ----------------------------------------------------------------------------------------


# The operator token of every benchmark service (write_config): the API and the /ws stream need one.
BENCH_TOKEN = "bench-operator"


def write_config(
    path: Path,
    *,
    mqtt_port: int,
    http_port: int,
    site: Path | None,
    data_dir: Path,
    client_id: str,
    qos: int = 1,
    tick_s: float = 5.0,
    clock: str = "wall",
    push_port: int | None = None,
) -> Path:
    """A `crowdflow serve` config: this broker, this site, embedded store, alerts recorded and not sent.
    The push process on `push_port`, else a free port: never "auto" (port + 1 may be another process's
    ephemeral port on a busy machine, and serve refuses to start on a taken port)."""
    site_line = f"site = {json.dumps(str(site))}\n" if site else ""
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nclient_id = {json.dumps(client_id)}\nqos = {qos}\n\n'
        f'[service]\n{site_line}data_dir = {json.dumps(str(data_dir))}\nclock = "{clock}"\ntick_s = {tick_s}\n\n'
        f'[dashboard]\nhost = "127.0.0.1"\nport = {http_port}\npush_port = {push_port or free_port()}\n'
        f'api_token = "{BENCH_TOKEN}"\n\n'
        # The shipped roster's phones are placeholders: record notifications, send nothing.
        "[alerts]\ndeliver = false\n",
        encoding="utf-8",
    )
    return path


class ServiceProcess(servers.ServiceProcess):
    """The service as benchmarks read it: tick time, ingest counters, RSS, paused and resumed."""

    def get(self, path: str, token: str | None = BENCH_TOKEN, timeout_s: float = 5.0) -> Any:
        """As the benchmark's operator (the API needs a token: dashboard/policy.py)."""
        return super().get(path, token, timeout_s)

    def start(self, timeout_s: float = 600.0) -> None:  # a 50,000-sensor site takes minutes to build
        super().start(timeout_s)

    def tick_ts(self) -> float | None:
        """The time of the service's last tick (event time: simulated with clock = "sim"), from /api/district."""
        try:
            ts = self.get("/api/district").get("ts")
        except urllib.error.HTTPError as e:
            if e.code == 503:  # no tick yet
                return None
            raise
        return float(ts) if ts is not None else None

    def ingest(self) -> dict[str, Any]:
        """The ingest counters (ingest.stats.IngestStats), as of the service's last status update (<= 1 s old)."""
        pipeline = self.health().get("pipeline")
        if not isinstance(pipeline, dict):
            return {}
        counters = pipeline.get("ingest")
        return counters if isinstance(counters, dict) else {}

    def rejected(self, counters: dict[str, Any] | None = None) -> int:
        """Readings ingest rejected, all reasons (IngestStats.rejected; /healthz has no total)."""
        by_reason = (counters if counters is not None else self.ingest()).get("rejected") or {}
        return sum(int(v) for v in by_reason.values())

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise ServiceError(f"no VmRSS in /proc/{self.pid}/status")

    def pause(self) -> None:
        """SIGSTOP: the service stays connected but reads nothing; the broker queues for it."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


def new_service(
    workdir: Path,
    name: str,
    *,
    mqtt_port: int,
    site: Path | None,
    qos: int = 1,
    tick_s: float = 5.0,
    clock: str = "wall",
    push_port: int | None = None,
) -> ServiceProcess:
    """A service with its own data dir, HTTP port and MQTT client id (so its broker session is its own)."""
    http_port = free_port()
    data = workdir / name
    data.mkdir(parents=True, exist_ok=True)
    cfg = write_config(
        data / "crowdflow.toml",
        mqtt_port=mqtt_port,
        http_port=http_port,
        site=site,
        data_dir=data / "var",
        client_id=f"bench-{name}",
        qos=qos,
        tick_s=tick_s,
        clock=clock,
        push_port=push_port,
    )
    return ServiceProcess(cfg, http_port, data / "service.log")


# --- the feed -------------------------------------------------------------------------------------------


class ReadingFeed:
    """Valid v1 readings for every sensor of a site, each stream's seq counting up from 0, values as live
    sensors send them (never the same twice in a row for long, so sensor health sees working sensors).

    Counters count people in and out at the rate the site's capacity profile expects for the zone at that
    time (Poisson, shared among the zone's counters, at least one person a message on average so a quiet
    counter is not taken for a stuck one): the surge models see a normal evening. Area and density sensors
    report the zone near `calm_share` of its capacity (level normal). `message(i, ts)` is sensor i's next
    reading at event time ts, with the arrivals it adds to its zone (what `arrivals_today` grows by).
    """

    def __init__(
        self, site: Site, *, calm_share: float = CALM_SHARE, interval_s: float | None = None, seed: int = 7
    ) -> None:
        """interval_s: what counts messages say their interval is (None: each sensor's own from the site)."""
        self.site = site
        self.interval_s = interval_s
        self.tz = ZoneInfo(site.info.timezone)
        self.sensors: list[Sensor] = list(site.sensors.values())
        self.topics = [site.topic_of(s, _kind(s)) for s in self.sensors]
        self.seq = [0] * len(self.sensors)
        self.totals = [(0, 0)] * len(self.sensors)  # running totals sent, for "total" counters
        self.calm_share = calm_share
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.profile = CapacityProfile(site)
        counters = Counter(s.zone for s in self.sensors if s.kind == "counter")
        self._share = [1.0 / counters[s.zone] if s.kind == "counter" else 0.0 for s in self.sensors]
        self._rates: dict[tuple[str, int], float] = {}  # (zone, 15-min slot) -> people/s through the zone
        self.sent = 0

    def _rate_per_s(self, zone: str, ts: float) -> float:
        key = (zone, int(ts // 900))
        rate = self._rates.get(key)
        if rate is None:
            rate = self._rates[key] = self.profile.expected_rate_per_min(zone, ts) / 60.0
        return rate

    def __len__(self) -> int:
        return len(self.sensors)

    def message(self, i: int, ts: float, share: float | None = None) -> tuple[str, bytes, int]:
        """(topic, payload, arrivals added). `share`: what an anchor reports (default: calm, +-5%)."""
        s = self.sensors[i]
        seq = self.seq[i]
        self.seq[i] = seq + 1
        self.sent += 1
        when = dt.datetime.fromtimestamp(ts, self.tz)
        rng = self.rng
        msg: Message
        added = 0
        if s.kind == "counter":
            interval = self.interval_s or s.interval_s
            lam = max(1.0, self._rate_per_s(s.zone, ts) * self._share[i] * interval)
            cin, cout = (int(x) for x in self.np_rng.poisson(lam, 2))
            # A counter mounted the other way round: its "out" is people entering the zone.
            entering = cout if s.direction == "reversed" else cin
            if s.mode == "total":
                tin, tout = self.totals[i]
                tin, tout = tin + cin, tout + cout
                self.totals[i] = (tin, tout)
                msg = TotalMsg(sensor=s.id, ts=when, seq=seq, in_total=tin, out_total=tout)
                added = entering if seq > 0 else 0  # the first total only sets the baseline
            else:
                msg = CountMsg(sensor=s.id, ts=when, seq=seq, interval_s=interval, in_=cin, out=cout)
                added = entering
        else:
            zone = self.site.zones[s.zone]
            people = zone.capacity * (self.calm_share * rng.uniform(0.95, 1.05) if share is None else share)
            if s.kind == "area":
                msg = OccupancyMsg(sensor=s.id, ts=when, seq=seq, count=round(people))
            else:
                msg = DensityMsg(sensor=s.id, ts=when, seq=seq, density=round(people / zone.area_m2, 4))
        return self.topics[i], encode(msg), added


def _kind(s: Sensor) -> str:
    if s.kind == "counter":
        return "total" if s.mode == "total" else "count"
    return "occupancy" if s.kind == "area" else "density"


if __name__ == "__main__":
    print("benchmarks/_common.py: helpers for the service benchmarks; nothing to run")


def held_bytes(build: Callable[[], Any], feed: Callable[[Any], None]) -> int:
    """Bytes still allocated by a model built and fed inside a tracemalloc window (inputs made outside it)."""
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        model = build()
        feed(model)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        del model
        return held
    finally:
        tracemalloc.stop()
