"""Run a scenario against an MQTT broker: simulate, publish on the simulated clock, write ground truth.

from sim.publisher import run_scenario, load_scenario
run_scenario(site, load_scenario("nye"), host="localhost", port=1883, speed=60, out_dir=Path("run"))
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from domain.site import Site
from sim.mqtt import MqttAuth, MqttSink, Pacer, Progress, SimClockTicker
from sim.scenario import Scenario, load_scenario
from sim.stream import Simulation, iter_messages
from sim.wire import SimMessage

__all__ = ["RunSummary", "SimMessage", "iter_messages", "load_scenario", "run_scenario"]


class RunSummary(msgspec.Struct, kw_only=True):
    scenario: str
    site: str
    sim_start: str  # local ISO time of the published window
    sim_end: str
    sim_reached: str  # how far it got (the end unless stopped)
    messages: int  # handed to the MQTT client
    acked: int  # acknowledged by the broker (QoS 1/2) or written (QoS 0)
    malformed: int
    duplicates: int
    wall_s: float
    msg_per_s: float
    speed: float
    qos: int
    reconnects: int
    stopped: bool  # the stop event ended the run early
    out_dir: str | None = None
    truth: dict[str, Any] = msgspec.field(default_factory=dict)


def run_scenario(
    site: Site,
    scenario: Scenario,
    *,
    host: str,
    port: int,
    speed: float,
    out_dir: Path | None,
    start: str | None = None,
    duration_s: float | None = None,
    qos: int = 1,
    progress: bool = True,
    stop: threading.Event | None = None,
    connect_timeout_s: float = 10.0,
    auth: MqttAuth | None = None,
) -> RunSummary:
    """Publish a scenario (or the window from `start` for `duration_s`) and write its ground truth to out_dir.

    Raises `sim.mqtt.BrokerUnavailable` if no broker answers at first; later outages are ridden out.
    """
    sim = Simulation(site, scenario, start, duration_s)
    tz = ZoneInfo(site.info.timezone)
    w0, w1 = sim.window
    pacer = Pacer(speed, w0)
    show = Progress(progress)
    sink = MqttSink(host, port, qos=qos, connect_timeout_s=connect_timeout_s, auth=auth)
    ticker = SimClockTicker(sink, speed)
    wall0 = time.monotonic()
    reached = w0
    malformed = stopped = 0

    def line() -> str:
        elapsed = max(time.monotonic() - wall0, 1e-9)
        clock = dt.datetime.fromtimestamp(reached, tz).strftime("%Y-%m-%d %H:%M:%S")
        state = "" if sink.connected else "  [broker away, buffering]"
        return (
            f"{scenario.name} {clock}  sent {sink.sent - ticker.sent}  acked {sink.acked}  "
            f"{(sink.sent - ticker.sent) / elapsed:,.0f} msg/s{state}"
        )

    try:
        for m in sim.messages():
            if (
                not pacer.wait_until(m.sim_ts, stop)
                or not ticker.tick(m.sim_ts, stop)
                or not sink.publish(m.topic, m.payload, stop)
            ):
                stopped = True
                break
            reached = m.sim_ts
            malformed += m.malformed
            show.update(line)
        else:
            # A paced run lasts the whole window, even if its last messages come earlier.
            stopped = not pacer.wait_until(w1, stop) or not ticker.tick(w1, stop)
            reached = w1 if not stopped else reached
        if not stopped:
            sink.drain(60.0, stop)
        show.update(line, force=True)
    finally:
        sink.close(drain_s=0 if stopped else 5.0)
        show.done()
    wall = time.monotonic() - wall0
    truth = sim.write_truth(out_dir) if out_dir is not None else sim.summary()
    return RunSummary(
        scenario=scenario.name,
        site=site.info.id,
        sim_start=dt.datetime.fromtimestamp(w0, tz).isoformat(),
        sim_end=dt.datetime.fromtimestamp(w1, tz).isoformat(),
        sim_reached=dt.datetime.fromtimestamp(reached, tz).isoformat(),
        messages=sink.sent - ticker.sent,
        acked=max(sink.acked - ticker.sent, 0),
        malformed=malformed,
        duplicates=int(truth["duplicates"]),
        wall_s=round(wall, 3),
        msg_per_s=round((sink.sent - ticker.sent) / wall, 1) if wall > 0 else 0.0,
        speed=speed,
        qos=qos,
        reconnects=max(sink.connects - 1, 0),
        stopped=bool(stopped),
        out_dir=str(out_dir) if out_dir is not None else None,
        truth=truth,
    )
