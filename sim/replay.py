"""Replay a recorded CSV of sensor readings over MQTT as v1 messages, accelerated.

Two layouts, told apart by the header: `timestamp,sensor_id,in,out` (line counters: per-interval counts
for sensors in interval mode, running totals for sensors in total mode, as the device reported them) and
`timestamp,sensor_id,count` (area sensors: people; density sensors: people, sent as people/m² of the
zone). Timestamps are ISO 8601 with or without offset (naive = the site's timezone) or epoch seconds.
Rows for sensors the site does not know are counted per sensor id; unusable rows are counted with their
line number and reason. Neither stops the replay.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec

from domain.messages import CountMsg, DensityMsg, Message, OccupancyMsg, TotalMsg, encode
from domain.site import Site
from sim.mqtt import MqttAuth, MqttSink, Pacer, Progress, SimClockTicker
from sim.wire import SimMessage

MAX_EXAMPLES = 20


class ReplayError(ValueError):
    """The file cannot be replayed at all (unreadable, or a header we do not understand)."""


class ReplaySummary(msgspec.Struct, kw_only=True):
    path: str
    rows: int  # data rows read
    published: int
    acked: int
    bad_rows: int
    bad_row_examples: list[str]  # "line 7: <reason>", the first few
    unknown_sensors: dict[str, int]  # sensor id → rows skipped
    first_ts: str | None
    last_ts: str | None
    wall_s: float
    msg_per_s: float
    speed: float
    stopped: bool = False


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str
    sensor: str | None = None  # set when the reason is an unknown sensor


def _parse_ts(text: str, tz: ZoneInfo) -> dt.datetime:
    s = text.strip()
    try:
        return dt.datetime.fromtimestamp(float(s), tz)
    except ValueError:
        pass
    when = dt.datetime.fromisoformat(s)  # ValueError with a clear message if not ISO
    return when if when.tzinfo else when.replace(tzinfo=tz)


def _count(text: str, name: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {text!r}") from None
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def iter_csv(path: str | Path, site: Site) -> Iterator[SimMessage | BadRow]:
    """Messages (in file order) and rejected rows of a CSV; `ReplayError` if the file is unusable."""
    tz = ZoneInfo(site.info.timezone)
    p = Path(path)
    try:
        f = open(p, newline="", encoding="utf-8-sig")  # noqa: SIM115  closed in the finally below
    except OSError as e:
        raise ReplayError(f"{p}: cannot read the file ({e.strerror})") from e
    try:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        flows = header == ["timestamp", "sensor_id", "in", "out"]
        if not flows and header != ["timestamp", "sensor_id", "count"]:
            raise ReplayError(
                f"{p}: header {','.join(header) or '(empty file)'} not understood; expected "
                "timestamp,sensor_id,in,out or timestamp,sensor_id,count"
            )
        seqs: Counter[str] = Counter()
        last: dict[str, dt.datetime] = {}
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                yield BadRow(line, f"{len(row)} columns, expected {len(header)}")
                continue
            sid = row[1].strip()
            sensor = site.sensors.get(sid)
            if sensor is None:
                yield BadRow(line, f"unknown sensor {sid!r}", sensor=sid)
                continue
            try:
                ts = _parse_ts(row[0], tz)
                kind, msg = _message(site, sensor.id, ts, row[2:], flows, last)
            except ValueError as e:
                yield BadRow(line, str(e))
                continue
            seqs[sid] += 1
            msg = msgspec.structs.replace(msg, seq=seqs[sid])
            last[sid] = ts
            yield SimMessage(
                sim_ts=ts.timestamp(),
                event_ts=ts.timestamp(),
                topic=site.topic_of(sensor, kind),
                payload=encode(msg),
                kind=kind,
                sensor=sid,
            )
    finally:
        f.close()


def _message(
    site: Site, sid: str, ts: dt.datetime, values: list[str], flows: bool, last: dict[str, dt.datetime]
) -> tuple[str, Message]:
    sensor = site.sensors[sid]
    if flows:
        if sensor.kind != "counter":
            raise ValueError(f"sensor {sid!r} is a {sensor.kind} sensor; in/out rows are for counters")
        a, b = _count(values[0], "in"), _count(values[1], "out")
        if sensor.mode == "total":
            return "total", TotalMsg(sensor=sid, ts=ts, seq=0, in_total=a, out_total=b)
        prev = last.get(sid)
        gap = (ts - prev).total_seconds() if prev is not None else 0.0
        interval = gap if 0 < gap <= 4 * sensor.interval_s else sensor.interval_s
        return "count", CountMsg(sensor=sid, ts=ts, seq=0, interval_s=interval, in_=a, out=b)
    if sensor.kind == "counter":
        raise ValueError(f"sensor {sid!r} is a counter; count rows are for area and density sensors")
    n = _count(values[0], "count")
    if sensor.kind == "area":
        return "occupancy", OccupancyMsg(sensor=sid, ts=ts, seq=0, count=n)
    area = site.zones[sensor.zone].area_m2
    return "density", DensityMsg(sensor=sid, ts=ts, seq=0, density=round(n / area, 4))


def replay_csv(
    path: str | Path,
    site: Site,
    *,
    host: str,
    port: int,
    speed: float,
    qos: int = 1,
    progress: bool = False,
    stop: threading.Event | None = None,
    connect_timeout_s: float = 10.0,
    auth: MqttAuth | None = None,
) -> ReplaySummary:
    """Publish a CSV's rows as v1 messages, paced by their timestamps at `speed` (0: as fast as possible)."""
    tz = ZoneInfo(site.info.timezone)
    items = iter_csv(path, site)
    first = next(items, None)  # raises ReplayError before we connect if the file is unusable
    sink = MqttSink(host, port, qos=qos, connect_timeout_s=connect_timeout_s, auth=auth)
    ticker = SimClockTicker(sink, speed)
    show = Progress(progress)
    wall0 = time.monotonic()
    rows = bad = 0
    examples: list[str] = []
    unknown: Counter[str] = Counter()
    first_ts = last_ts = None
    pacer: Pacer | None = None
    stopped = False
    name = Path(path).name

    def line() -> str:
        return (
            f"replay {name}: sent {sink.sent - ticker.sent}  acked {sink.acked}  "
            f"bad rows {bad}  unknown {unknown.total()}"
        )

    try:
        for item in itertools.chain([first] if first is not None else [], items):
            rows += 1
            if isinstance(item, BadRow):
                if item.sensor is not None:
                    unknown[item.sensor] += 1
                else:
                    bad += 1
                    if len(examples) < MAX_EXAMPLES:
                        examples.append(f"line {item.line}: {item.reason}")
                continue
            if pacer is None:
                pacer = Pacer(speed, item.sim_ts)
                first_ts = item.sim_ts
            if (
                not pacer.wait_until(item.sim_ts, stop)
                or not ticker.tick(item.sim_ts, stop)
                or not sink.publish(item.topic, item.payload, stop)
            ):
                stopped = True
                break
            last_ts = item.sim_ts if last_ts is None else max(last_ts, item.sim_ts)
            show.update(line)
        if not stopped:
            sink.drain(60.0, stop)
    finally:
        sink.close(drain_s=0 if stopped else 5.0)
        show.done()
    wall = time.monotonic() - wall0

    def iso(t: float | None) -> str | None:
        return dt.datetime.fromtimestamp(t, tz).isoformat() if t is not None else None

    return ReplaySummary(
        path=str(path),
        rows=rows,
        published=sink.sent - ticker.sent,
        acked=max(sink.acked - ticker.sent, 0),
        bad_rows=bad,
        bad_row_examples=examples,
        unknown_sensors=dict(unknown),
        first_ts=iso(first_ts),
        last_ts=iso(last_ts),
        wall_s=round(wall, 3),
        msg_per_s=round((sink.sent - ticker.sent) / wall, 1) if wall > 0 else 0.0,
        speed=speed,
        stopped=stopped,
    )
