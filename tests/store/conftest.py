from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.levels import Level
from domain.values import Reading, ZoneState
from tests.servers import Server, start_influxdb
from tests.store.fake_influx2 import FakeInflux2

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture(scope="module")
def shared_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One influxd for a module's tests (each test uses its own database): a start costs ~1 s."""
    srv = start_influxdb(Path(tmp_path_factory.mktemp("influxdb")))
    yield srv
    srv.stop()


@pytest.fixture
def fake() -> Iterator[FakeInflux2]:
    """A stand-in for InfluxDB 2.x's HTTP API (fake_influx2.py) on a free port."""
    srv = FakeInflux2().start()
    yield srv
    srv.stop()


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, poll_s: float = 0.01) -> None:
    """Until `cond()` holds; `timeout` only bounds a wait for something that must happen."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(poll_s)


def state(
    zone: str,
    ts: float,
    occupancy: float = 100.0,
    *,
    level: Level = Level.NORMAL,
    expected: float | None = None,
    arrivals: int | None = None,
) -> ZoneState:
    return ZoneState(
        zone=zone,
        ts=ts,
        occupancy=occupancy,
        capacity=1000,
        share=occupancy / 1000,
        density=occupancy / 500,
        inflow_per_min=10.0,
        outflow_per_min=8.0,
        arrivals_today=int(occupancy) * 3 if arrivals is None else arrivals,
        level=level,
        expected_inflow_per_min=expected,
    )


def flow(sensor: str, zone: str, ts: float, inflow: int = 5, outflow: int = 3, seq: int = 0) -> Reading:
    return Reading(sensor=sensor, zone=zone, kind="flow", ts=ts, seq=seq, interval_s=60, inflow=inflow, outflow=outflow)


def kill_server(srv: Server) -> None:
    """SIGKILL, as a crash or an OOM kill would: no shutdown, no flush."""
    srv.proc.kill()
    srv.proc.wait(10)


def restart_influxdb(srv: Server, timeout_s: float = 30.0) -> None:
    """Start a stopped influxd again on the same port and data directory, and wait until /ping answers."""
    srv.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{srv.url}/ping", timeout=1) as r:
            if r.status == 204:
                return
        time.sleep(0.05)
    raise RuntimeError(f"influxd did not answer /ping on {srv.url} after a restart")


def points(start: int, n: int) -> list[ZoneState]:
    """Zone states one second apart from T0 + start s; occupancy repeats the index, to check identity."""
    return [state("z", T0 + i, float(i)) for i in range(start, start + n)]


class Feeder(threading.Thread):
    """Ingest as the service does it: 5 points every ~2 ms handed to `store`, numbered on from 0, until the
    `with` block ends; `written` counts them, `slowest` is the longest a hand-over took (seconds)."""

    def __init__(self, store: Any) -> None:
        super().__init__(daemon=True, name="feeder")
        self.store, self.written, self.slowest = store, 0, 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            self.store.write_states(points(self.written, 5))
            self.slowest = max(self.slowest, time.perf_counter() - t)
            self.written += 5
            time.sleep(0.002)

    def __enter__(self) -> Feeder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def sigkill(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a child process that is still running, and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
