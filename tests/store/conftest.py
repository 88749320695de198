from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.levels import Level
from domain.values import Reading, ZoneState
from tests.servers import Server, start_influxdb

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture(scope="module")
def shared_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One influxd for a module's tests (each test uses its own database): a start costs ~1 s."""
    srv = start_influxdb(Path(tmp_path_factory.mktemp("influxdb")))
    yield srv
    srv.stop()


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
