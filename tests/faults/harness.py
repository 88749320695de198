"""What the fault tests and benchmarks/faults.py share: a small site and duty roster written for the run, a
real Mosquitto (persistent sessions saved to disk), `crowdflow serve` as a child process that can be
SIGKILLed, paused and restarted, a sensor feed that numbers every stream's messages, notification receivers,
and one result row per fault.

Counting: every message the feed publishes is one (sensor, kind, seq) that no other message has. The
service's ingest counters (/healthz "pipeline" -> "ingest") say how many it accepted, how many it rejected
as duplicates (QoS 1 redeliveries) and for what other reasons. A service run's counters start at zero, so
a fault that restarts the service adds up the runs, each read once that run has taken everything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from domain.messages import CountMsg, Message, OccupancyMsg, encode
from sim.mqtt import MqttSink
from tests.alerts.receiver import Receiver
from tests.servers import Server, ServiceProcess, free_port, start_mosquitto

TZ = ZoneInfo("Asia/Shanghai")
TOKEN = "t-faults"  # the operator token of every service run here (deliveries need one)
CAPACITY = 1000
ALERT_IN_URL = re.compile(r"/officer#alert=([0-9a-f]+)")

# Persistent sessions and their queued QoS 1 messages are written to disk on a clean stop and restored at
# start (start_mosquitto sets persistence on); no cap on what is queued for an absent client.
BROKER_CONF = "max_queued_messages 0\nautosave_interval 60\n"  # autosave as deploy/mosquitto/mosquitto.conf


# --- the site and the roster ------------------------------------------------------------------------------


def zone_ids(n: int) -> list[str]:
    return [f"z{i:02d}" for i in range(n)]


def cam(zone: str) -> str:
    return f"{zone}-cam"


def gate(zone: str) -> str:
    return f"{zone}-gate"


def write_site(path: Path, zones: int) -> Path:
    """`zones` plazas of CAPACITY people on 1,000 m², each with an area camera and a line counter."""
    parts = [
        '[site]\nid = "faults"\nname_zh = "故障测试"\nname_en = "Fault tests"\ntimezone = "Asia/Shanghai"\n'
        "peak_day_visits = 100000\n\n[thresholds]\nshare = [0.6, 0.7, 0.8, 0.95]\n"
        "density = [1.5, 2.0, 3.0, 4.0]\nhysteresis = 0.05\nmin_duration_s = 30\n\n"
        '[profile]\nsource = "fault tests"\nday_factor = { weekday = 0.6, holiday = 1.0, nye = 1.3 }\n'
        "[profile.shapes.flat]\nweekday = [[0, 1.0], [24, 1.0]]\nholiday = [[0, 1.0], [24, 1.0]]\n\n"
        '[[grids]]\nid = "g"\nname_zh = "网格"\nname_en = "Grid"\nkind = "business"\n'
    ]
    shares = [round(1.0 / zones, 4)] * zones
    shares[-1] = round(1.0 - sum(shares[:-1]), 4)  # the loader wants them to add up to 1.0
    for i, z in enumerate(zone_ids(zones)):
        parts.append(
            f'\n[[micro_grids]]\nid = "m-{z}"\ngrid = "g"\nname_zh = "微网格{i}"\nname_en = "Micro {z}"\n'
            f'\n[[zones]]\nid = "{z}"\nname_zh = "广场{i}"\nname_en = "Plaza {z}"\nkind = "plaza"\ngrid = "g"\n'
            f'micro_grid = "m-{z}"\narea_m2 = 1000\ncapacity = {CAPACITY}\n'
            f'capacity_rule = "1000 m² ÷ 1.0 m²/person"\nvisit_share = {shares[i]}\ndwell_min = 30\n'
            f'shape = "flat"\npolygon = [[{i * 10}, 0], [{i * 10 + 10}, 0], [{i * 10 + 10}, 10], [{i * 10}, 10]]\n'
            f'\n[[sensors]]\nid = "{cam(z)}"\nzone = "{z}"\nkind = "area"\ninterval_s = 5\n'
            f'\n[[sensors]]\nid = "{gate(z)}"\nzone = "{z}"\nkind = "counter"\nmode = "interval"\n'
            f'entrance = "gate"\ninterval_s = 5\n'
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


def write_roster(path: Path, zones: int, channels: Callable[[str], list[str]], command: list[str]) -> Path:
    """One officer per zone, always on duty, told on `channels(zone)`; a command centre on `command`.
    Escalation waits 10 minutes even at I red, so a test sees only the notifications its data causes."""
    parts = [
        '[roster]\nsite = "faults"\nname = "fault tests"\n\n[escalation]\nsteps = ["responsible", "command"]\n'
        "repeat_s = 3600\nmax_repeats = 1\n[escalation.delay_s]\nI = 600\nII = 600\nIII = 600\nIV = 600\n"
        f'\n[[people]]\nid = "cmd"\nname = "Command"\nrole = "command"\nchannels = {json.dumps(command)}\n'
        '\n[[duties]]\nperson = "cmd"\nshift = "always"\n'
    ]
    for z in zone_ids(zones):
        parts.append(
            f'\n[[people]]\nid = "off-{z}"\nname = "Officer {z}"\nrole = "officer"\n'
            f"channels = {json.dumps(channels(z))}\n"
            f'\n[[duties]]\nperson = "off-{z}"\nshift = "always"\nzones = ["{z}"]\n'
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


# --- servers ----------------------------------------------------------------------------------------------


def broker(workdir: Path, port: int | None = None) -> Server:
    return start_mosquitto(workdir, port=port, extra_conf=BROKER_CONF)


@contextlib.contextmanager
def running_broker(workdir: Path) -> Iterator[Server]:
    srv = broker(workdir)
    try:
        yield srv
    finally:
        srv.stop()


class FaultService(ServiceProcess):
    """`crowdflow serve` as the fault tests drive it: killed, paused, its counters read."""

    def kill(self) -> None:
        """SIGKILL: no flush, no snapshot, no goodbye to the broker."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    health_failures: Counter[str] | None = None  # /healthz calls that failed (timed out, refused), by error

    def start(self, timeout_s: float = 120.0) -> None:
        super().start(timeout_s)
        self.health_failures = None  # refusals while it was starting are not failures

    def health(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """/healthz, asked up to three times: a service busy with a thousand clients may answer late."""
        for attempt in range(3):
            try:
                return super().health(timeout_s)
            except OSError as e:
                if self.health_failures is None:
                    self.health_failures = Counter()
                self.health_failures[type(e).__name__ + ": " + str(getattr(e, "reason", e))[:60]] += 1
                if attempt == 2:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the service has used so far, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def pipeline(self) -> dict[str, Any]:
        p = self.health().get("pipeline")
        return p if isinstance(p, dict) else {}

    def ingest(self) -> dict[str, Any]:
        i = self.pipeline().get("ingest")
        return i if isinstance(i, dict) else {}

    def zones(self) -> dict[str, dict[str, Any]]:
        return {z["id"]: z for z in self.get("/api/zones", token=TOKEN)}

    def alerts(self, state: str = "all") -> list[dict[str, Any]]:
        body = self.get(f"/api/alerts?state={state}&limit=1000", token=TOKEN)
        return list(body) if isinstance(body, list) else []

    def attempts(self, alert_ids: list[str]) -> list[dict[str, Any]]:
        """Every delivery attempt recorded in the journal for these alerts, each once."""
        seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for aid in alert_ids:
            for d in self.get(f"/api/alerts/{aid}/deliveries", token=TOKEN):
                for x in d["attempts"]:
                    seen[(x["notification_id"], x["person"], x["channel"], x["attempt"])] = x
        return list(seen.values())

    def wait_taken(self, expected: int, timeout_s: float = 90.0, quiet_s: float = 4.0) -> dict[str, Any]:
        """Until the service has received `expected` sensor messages (or nothing new came for `quiet_s`), and
        one status update more; its ingest counters then."""
        deadline = time.monotonic() + timeout_s
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            got = int(self.ingest().get("received", 0))
            if got != last:
                last, since = got, time.monotonic()
            elif got >= expected or time.monotonic() - since > quiet_s:
                break
            time.sleep(0.25)
        time.sleep(1.2)  # the status in /healthz is refreshed once a second
        return self.ingest()


def service_config(
    path: Path,
    *,
    mqtt_port: int,
    site: Path,
    roster: Path,
    data_dir: Path,
    client_id: str,
    http_port: int | None = None,
    max_attempts: int = 3,
    snapshot_s: float | None = None,
    tick_s: float = 1.0,
    sensor_rate_limit: int | None = None,
    push_port: int | str | None = None,
) -> FaultService:
    """A wall-clock service on this site and roster, its own data dir, client id and port; deliveries on.
    push_port: a free port unless given ("off": the stream on the dashboard's port). Never "auto": port + 1
    may be some other process's ephemeral port on a busy machine, and serve would refuse to start."""
    port = http_port or free_port()
    push = json.dumps(push_port) if isinstance(push_port, str) else push_port or free_port()
    snapshot = f"snapshot_s = {snapshot_s}\n" if snapshot_s is not None else ""
    if sensor_rate_limit is not None:
        snapshot += f"sensor_rate_limit = {sensor_rate_limit}\n"
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nclient_id = "{client_id}"\nqos = 1\n'
        f'[service]\nsite = {json.dumps(str(site))}\ndata_dir = {json.dumps(str(data_dir))}\nclock = "wall"\n'
        f"tick_s = {tick_s}\n{snapshot}"
        f'[dashboard]\nhost = "127.0.0.1"\nport = {port}\npush_port = {push}\napi_token = "{TOKEN}"\n'
        f"[alerts]\nroster = {json.dumps(str(roster))}\nmax_attempts = {max_attempts}\n"
        f'public_url = "http://127.0.0.1:{port}"\n',
        encoding="utf-8",
    )
    return FaultService(path, port, path.parent / "service.log")


def fault_service(
    workdir: Path,
    mosq: Server,
    zones: int,
    channels: Callable[[str], list[str]],
    command: list[str],
    *,
    client_id: str,
    **config: Any,
) -> FaultService:
    """The site, the roster (officers told on `channels(zone)`, the command centre on `command`) and the
    service's config in `workdir`, for a broker; `config`: service_config's settings (snapshot_s, ...)."""
    site = write_site(workdir / "site.toml", zones)
    roster = write_roster(workdir / "roster.toml", zones, channels, command)
    return service_config(
        workdir / "crowdflow.toml", mqtt_port=mosq.port, site=site, roster=roster, data_dir=workdir / "var",
        client_id=client_id, **config,
    )  # fmt: skip


@contextlib.contextmanager
def started(svc: FaultService) -> Iterator[FaultService]:
    """`svc` started, and stopped (SIGTERM) however the block ends."""
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@contextlib.contextmanager
def one_receiver_run(
    workdir: Path, zones: int, *, client_id: str, **config: Any
) -> Iterator[tuple[Receiver, Server, FaultService]]:
    """What most faults run on: a notification receiver (each zone's officer told on /a/<zone>, the command
    centre on /cmd), a broker, and the service (fault_service; `config`: service_config's settings), started;
    all stopped however the block ends, the service first."""
    with Receiver() as rx, running_broker(workdir / "mosquitto") as mosq:
        officer, command = (lambda z: [rx.url("json", f"/a/{z}")]), [rx.url("json", "/cmd")]
        with started(fault_service(workdir, mosq, zones, officer, command, client_id=client_id, **config)) as svc:
            yield rx, mosq, svc


# --- the sensors ------------------------------------------------------------------------------------------


class Sensors:
    """The site's sensors publishing through one reconnecting, windowed paho client (sim.mqtt.MqttSink).

    Each (sensor, kind) counts its seq up from 0, so every message is unique; `sent` counts what was handed
    to the client, `sink.acked` what the broker acknowledged. Event time is the wall clock plus `skew_s`.
    """

    def __init__(self, zones: list[str], port: int, *, window: int = 2000) -> None:
        self.zones = zones
        self.sink = MqttSink("127.0.0.1", port, qos=1, window=window)
        self.seq: Counter[str] = Counter()
        self.arrivals: Counter[str] = Counter()  # zone -> people counted in by its gate, all messages sent
        self.arrivals_by_day: Counter[tuple[str, dt.date]] = Counter()  # (zone, local date of the event)
        self.sent = 0
        self.lock = threading.Lock()

    def _publish(self, topic: str, msg: Message) -> None:
        with self.lock:
            self.sink.publish(topic, encode(msg))
            self.sent += 1

    def _next(self, sensor: str) -> int:
        with self.lock:
            n = self.seq[sensor]
            self.seq[sensor] = n + 1
            return n

    def people(self, zone: str, count: int, *, skew_s: float = 0.0, at: float | None = None) -> None:
        s = cam(zone)
        ts = dt.datetime.fromtimestamp((time.time() if at is None else at) + skew_s, TZ)
        self._publish(
            f"dt/crowdflow/g/{zone}/{s}/occupancy", OccupancyMsg(sensor=s, ts=ts, seq=self._next(s), count=count)
        )

    def crossing(self, zone: str, cin: int, cout: int, *, skew_s: float = 0.0, at: float | None = None) -> None:
        s = gate(zone)
        ts = dt.datetime.fromtimestamp((time.time() if at is None else at) + skew_s, TZ)
        msg = CountMsg(sensor=s, ts=ts, seq=self._next(s), interval_s=5.0, in_=cin, out=cout)
        self._publish(f"dt/crowdflow/g/{zone}/{s}/count", msg)
        with self.lock:
            self.arrivals[zone] += cin
            self.arrivals_by_day[(zone, ts.date())] += cin

    def arrivals_today(self, zone: str) -> int:
        """People counted in at `zone` with an event time on today's local date: what the service's
        arrivals_today should say (it starts again at local midnight, by event time)."""
        with self.lock:
            return self.arrivals_by_day[(zone, dt.datetime.now(TZ).date())]

    def raw(self, topic: str, payload: bytes) -> None:
        """A message outside the contract (a flood of garbage): counted in `sent`."""
        with self.lock:
            self.sink.publish(topic, payload)
            self.sent += 1

    def round(self, share: float | Callable[[str], float], *, jitter: int = 0, only: list[str] | None = None) -> int:
        """One reading from every camera (of `only` these zones) at `share` of capacity (a number, or one per
        zone) + jitter people, so no sensor looks stuck, and one crossing count from every gate; messages sent."""
        for i, z in enumerate(self.zones if only is None else only):
            at = share(z) if callable(share) else share
            self.people(z, round(CAPACITY * at) + (jitter + i) % 7)
            self.crossing(z, 3 + (jitter + i) % 4, 2 + (jitter + i) % 3)
        return 2 * len(self.zones if only is None else only)

    def drain(self, timeout_s: float = 60.0) -> bool:
        return self.sink.drain(timeout_s)

    def close(self) -> None:
        self.sink.close(drain_s=30.0)


class Pacer(threading.Thread):
    """Rounds of readings at a steady pace in the background (the surge going on while a fault happens)."""

    def __init__(
        self, sensors: Sensors, *, share: Callable[[int], float | Callable[[str], float]], rounds: int, every_s: float
    ) -> None:
        super().__init__(daemon=True, name="pacer")
        self.sensors, self.share, self.rounds, self.every_s = sensors, share, rounds, every_s
        self.done_rounds = 0
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        for k in range(self.rounds):
            if self.stop.is_set():
                return
            self.sensors.round(self.share(k), jitter=k)
            self.done_rounds = k + 1
            left = t0 + (k + 1) * self.every_s - time.monotonic()
            if left > 0:
                time.sleep(left)


# --- notifications ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Told:
    """One notification request a receiver got: its path, title, alert id (from the acknowledge link), body."""

    path: str
    title: str
    alert_id: str
    message: str


def told(receiver: Receiver) -> list[Told]:
    out = []
    for req in receiver.requests:
        body = req.json()
        msg = str(body.get("message", ""))
        m = ALERT_IN_URL.search(msg)
        out.append(Told(req.path, str(body.get("title", "")), m.group(1) if m else "", msg))
    return out


def raised(items: list[Told], path_prefix: str = "") -> Counter[tuple[str, str]]:
    """(path, alert id) -> how many "NEW" notifications announced it there."""
    return Counter((t.path, t.alert_id) for t in items if t.title.endswith("· NEW") and t.path.startswith(path_prefix))


def red_notified(items: list[Told], zones: list[str] | tuple[str, ...], path: str = "/a/") -> int:
    """How many of `zones` had an I red notification at `path`<zone>."""
    return sum(1 for z in zones if any(t.path == f"{path}{z}" and t.title.startswith("I red") for t in items))


def duplicated(items: list[Told], ok_paths: Callable[[str], bool]) -> int:
    """Notifications received more than once on a path that accepts them: the same text twice, or the same
    alert announced as new twice."""
    same_text = Counter((t.path, t.title, t.message) for t in items if ok_paths(t.path))
    new_twice = raised([t for t in items if ok_paths(t.path)])
    return sum(n - 1 for n in same_text.values() if n > 1) + sum(n - 1 for n in new_twice.values() if n > 1)


# --- results ----------------------------------------------------------------------------------------------


@dataclass
class FaultResult:
    """One row of the fault table. `problems` lists every expectation that did not hold (empty: passed)."""

    fault: str
    sent: int = 0  # sensor messages the broker acknowledged to the feed
    received: int = 0  # accepted by ingest, summed over service runs
    redelivered: int = 0  # rejected as duplicates: QoS 1 redeliveries ingest caught, not a loss nor a fault
    rejected: dict[str, int] = field(default_factory=dict)  # other rejections, by reason (expected ones too)
    expected_rejected: int = 0  # rejections the fault itself provokes (garbage, clocks out of range)
    alerts_expected: int = 0
    alerts_delivered: int = 0
    notifications_duplicated: int = 0
    figures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Messages that should have been accepted and were not."""
        return max(0, self.sent - self.expected_rejected - self.received)

    @property
    def duplicated(self) -> int:
        """Messages accepted more than once (every message is unique, so any excess is a repeat)."""
        return max(0, self.received - (self.sent - self.expected_rejected))

    @property
    def alerts_missed(self) -> int:
        return max(0, self.alerts_expected - self.alerts_delivered)

    def check(self, ok: bool, problem: str) -> None:
        if not ok and problem not in self.problems:  # the same problem found twice is listed once
            self.problems.append(problem)

    def check_counts(self) -> None:
        """The tallies every fault must hold: no rejection the fault did not provoke, nothing lost or accepted
        twice, every expected alert notified, no notification sent twice."""
        self.check(not self.rejected, f"unexpected rejections: {self.rejected}")
        self.check(self.lost == 0, f"{self.lost} of {self.sent} sensor messages lost (rejections: {self.rejected})")
        self.check(self.duplicated == 0, f"{self.duplicated} messages accepted twice")
        self.check(self.alerts_missed == 0, f"{self.alerts_missed} of {self.alerts_expected} alerts never notified")
        self.check(self.notifications_duplicated == 0, f"{self.notifications_duplicated} notifications sent twice")

    def checked(self) -> FaultResult:
        """This result once check_counts has run: what a fault's run returns."""
        self.check_counts()
        return self

    def take(
        self, svc: FaultService, expected: int, *, ignore: tuple[str, ...] = (), timeout_s: float = 90.0
    ) -> dict[str, Any]:
        """Wait until this service run has received `expected` messages, add its ingest counters
        (add_run, `ignore`: rejections the fault provokes on purpose) and return them."""
        ingest = svc.wait_taken(expected, timeout_s=timeout_s)
        self.add_run(ingest, ignore)
        return ingest

    def tally_alerts(self, items: list[Told], zones: list[str] | tuple[str, ...]) -> None:
        """One I red alert expected for each of `zones`, notified on /a/<zone>; any notification received twice
        (on any path) counts as duplicated."""
        self.alerts_expected = len(zones)
        self.alerts_delivered = red_notified(items, zones)
        self.notifications_duplicated = duplicated(items, lambda p: True)

    def add_run(self, ingest: dict[str, Any], ignore: tuple[str, ...] = ()) -> None:
        """Add one service run's ingest counters (duplicates apart from the other rejections)."""
        self.received += int(ingest.get("accepted", 0))
        self.redelivered += int(ingest.get("duplicates", 0))
        for reason, n in dict(ingest.get("rejected") or {}).items():
            if reason != "duplicate" and reason not in ignore:
                self.rejected[reason] = self.rejected.get(reason, 0) + int(n)

    def report(self) -> str:
        return f"{self.fault}: " + ("; ".join(self.problems) if self.problems else "ok")


COLUMNS = (
    ("fault", 27),
    ("sent", 7),
    ("received", 9),
    ("rejected", 9),
    ("lost", 5),
    ("duplicated", 11),
    ("redelivered", 12),
    ("alerts exp.", 12),
    ("delivered", 10),
    ("dup. notif.", 11),
)


def table(results: list[FaultResult]) -> str:
    """One row per fault; "rejected": the rejections the fault provokes on purpose (bad clocks, garbage)."""
    head = " ".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w) in enumerate(COLUMNS))
    lines = [head, "-" * len(head)]
    for r in results:
        cells = (
            r.fault, r.sent, r.received, r.expected_rejected, r.lost, r.duplicated, r.redelivered,
            r.alerts_expected, r.alerts_delivered, r.notifications_duplicated,
        )  # fmt: skip
        lines.append(
            " ".join(
                f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS, strict=True))
            )
        )
    return "\n".join(lines)


def summary_line(results: list[FaultResult]) -> str:
    return (
        f"faults={len(results)} lost={sum(r.lost for r in results)} "
        f"duplicated={sum(r.duplicated + r.notifications_duplicated for r in results)} "
        f"alerts_missed={sum(r.alerts_missed for r in results)}"
    )


def assert_passed(res: FaultResult) -> None:
    """A test's verdict: the fault's row and figures printed, every expectation held."""
    print(table([res]), res.figures)
    assert not res.problems, res.report()


def wait_for(ok: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.25) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if ok():
                return
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
