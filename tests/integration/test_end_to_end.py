"""The whole pipeline on real components: Mosquitto and InfluxDB 1.6 started here, `crowdflow serve` as a
separate process, one simulated hour of New Year's Eve (23:00-00:00) published at full speed with malformed
payloads injected, a push-stream client on /ws, and the ground truth written by the simulator.

Tolerance for occupancy: |estimate - truth| <= 5% of the zone's capacity + 20 people, for every zone.
"""

from __future__ import annotations

import csv
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from websockets.sync.client import connect

from domain.levels import Level
from domain.loader import load_site
from domain.messages import DEADLETTER_TOPIC
from sim.publisher import run_scenario
from sim.scenario import load_scenario
from tests.servers import Server, ServiceProcess, free_port, influx_query

FIXTURES = Path(__file__).parent.parent / "fixtures"
REPO = Path(__file__).parent.parent.parent


TOKEN = "e2e-operator"  # the API and the push stream need a token (dashboard/policy.py)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _get(url: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH), timeout=5) as r:
        return json.loads(r.read())


class PushRecorder(threading.Thread):
    """Collects every message of the push stream, as a browser would receive it."""

    def __init__(self, url: str, origin: str) -> None:
        super().__init__(daemon=True)
        self.url, self.origin = url, origin
        self.messages: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with connect(self.url, origin=self.origin, open_timeout=10) as ws:  # type: ignore[arg-type]
            ws.send(json.dumps({"type": "auth", "token": TOKEN}))  # as the wall does: first message, not the URL
            self.ready.set()
            while not self.closed.is_set():
                try:
                    raw = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                except Exception:
                    return
                self.messages.append(json.loads(raw))

    def alerts(self) -> list[dict[str, Any]]:
        return [a for m in self.messages for a in m.get("alerts", [])]


@pytest.fixture
def service(tmp_path: Path, mosquitto: Server, influxdb: Server) -> Iterator[ServiceProcess]:
    port, push_port = free_port(), free_port()
    cfg = tmp_path / "crowdflow.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nclient_id = "cf-e2e"\n'
        f'[influx]\nurl = "{influxdb.url}"\ndatabase = "crowdflow"\n'
        f'[service]\nclock = "sim"\ndata_dir = "{tmp_path / "var"}"\ntick_s = 5\n'
        f'[dashboard]\nport = {port}\npush_port = {push_port}\napi_token = "{TOKEN}"\n'
    )
    svc = ServiceProcess(cfg, port, tmp_path / "service.log")
    svc.start()
    yield svc
    svc.stop()


def _ingest(base: str) -> dict[str, Any]:
    health = _get(f"{base}/healthz")
    return dict(health["pipeline"]["ingest"])


@pytest.mark.integration
def test_new_years_eve_hour_end_to_end(
    tmp_path: Path, mosquitto: Server, influxdb: Server, service: ServiceProcess
) -> None:
    base = service.base
    site = load_site()
    # Where the walls stream from: the push process (dashboard.push_port), the page's Origin the main site's.
    assert _get(f"{base}/api/stream") == {"url": None, "port": service.push_port}
    push = PushRecorder(f"ws://127.0.0.1:{service.push_port}/ws", origin=base)
    push.start()
    assert push.ready.wait(10), "push stream did not open"

    deadletters: list[bytes] = []
    dl = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="e2e-deadletter")
    dl.on_message = lambda c, u, m: deadletters.append(m.payload)
    dl.connect("127.0.0.1", mosquitto.port)
    dl.subscribe(DEADLETTER_TOPIC, qos=1)
    dl.loop_start()

    truth_dir = tmp_path / "truth"
    summary = run_scenario(
        site,
        load_scenario(FIXTURES / "nye_faults.toml"),
        host="127.0.0.1",
        port=mosquitto.port,
        speed=0,
        out_dir=truth_dir,
        start="23:00",
        duration_s=3600,
        progress=False,
    )
    sent = summary.messages
    # Wait until the service has taken every message (received stops growing).
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = _ingest(base)["received"]
        if got != last:
            last, stable_since = got, time.monotonic()
        elif got >= sent or time.monotonic() - stable_since > 5:
            break
        time.sleep(0.5)
    time.sleep(2 * 1.0)  # two wall ticks: the last sim-clock tick is graded and pushed

    ingest = _ingest(base)
    truth_summary = json.loads((truth_dir / "truth_summary.json").read_text())
    injected_malformed = int(truth_summary["malformed"])
    assert injected_malformed > 0
    assert ingest["received"] == sent, f"service received {ingest['received']} of {sent} messages"
    sub = _get(f"{base}/healthz")["subscriber"]  # QoS 1, acknowledged after handling: nothing dropped
    assert sub["dropped"] == 0 and sub["acked"] >= sent and sub["received"] >= sent, sub
    rejected = ingest["rejected"]
    bad = sum(rejected.get(r, 0) for r in ("malformed_json", "schema", "unknown_sensor"))
    assert bad == injected_malformed, f"rejections {rejected} vs {injected_malformed} injected malformed"
    assert ingest["accepted"] == sent - sum(rejected.values())
    assert ingest["accepted"] > 0.95 * sent
    # Every rejection was dead-lettered with its reason.
    deadline = time.monotonic() + 10
    while len(deadletters) < sum(rejected.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    reasons = {json.loads(p)["reason"] for p in deadletters}
    assert len(deadletters) == sum(rejected.values()) and reasons <= set(rejected)

    # Zone occupancies against ground truth at the end of the hour.
    rows = list(csv.DictReader((truth_dir / "truth_occupancy.csv").open()))
    last_ts = rows[-1]["ts"]
    truth = {r["zone"]: float(r["occupancy"]) for r in rows if r["ts"] == last_ts}
    zones = {z["id"]: z for z in _get(f"{base}/api/zones")}
    assert set(truth) == set(zones)
    off = {
        zid: (round(zones[zid]["occupancy"]), round(t))
        for zid, t in truth.items()
        if abs(zones[zid]["occupancy"] - t) > 0.05 * zones[zid]["capacity"] + 20
    }
    assert not off, f"zones off by more than 5% of capacity + 20 (estimate, truth): {off}"

    # The riverside surge: each segment that truly went over capacity got a red alert on the push stream,
    # one alert per zone (updated in place, never duplicated).
    windows = list(csv.DictReader((truth_dir / "truth_windows.csv").open()))
    over = {w["zone"] for w in windows if site.zones[w["zone"]].kind == "riverside_segment"}
    assert len(over) >= 3, f"the NYE hour should push several segments over capacity, truth has {over}"
    pushed = push.alerts()
    for zid in over:
        levels = [a["level"] for a in pushed if a["zone"] == zid]
        assert levels, f"no alert pushed for {zid}, which went over capacity"
        assert max(levels) == int(Level.I), f"{zid} went over capacity but its alert peaked at {max(levels)}"
        ids = {a["id"] for a in pushed if a["zone"] == zid}
        assert len(ids) == 1, f"{zid} got {len(ids)} alerts; one alert per situation"
    assert push.messages[0]["type"] == "snapshot"
    assert {m["type"] for m in push.messages[1:]} <= {"delta", "ping", "snapshot"}

    # InfluxDB holds the series of every zone and the raw sensor readings.
    assert service.stop() == 0, service.log_tail()  # shutdown flushes what is still buffered
    res = influx_query(influxdb.url, "crowdflow", "SELECT count(occupancy) FROM zone_state GROUP BY zone")
    series = res["results"][0]["series"]  # type: ignore[index]
    counts = {s["tags"]["zone"]: s["values"][0][1] for s in series}
    assert set(counts) == set(site.zones)
    # In sim-clock mode a tick follows each simulated instant that carries data: here every 30 s (the area
    # sensors' interval), so an hour gives ~120 states per zone.
    assert min(counts.values()) >= 3600 / 30 * 0.95, f"zone_state points per zone: {counts}"
    res = influx_query(influxdb.url, "crowdflow", "SELECT count(*) FROM sensor_reading")
    assert res["results"][0]["series"][0]["values"][0][1] > 0  # type: ignore[index]
    push.closed.set()
    dl.loop_stop()
