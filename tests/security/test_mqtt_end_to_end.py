"""The whole path on the shipped broker configuration: `crowdflow serve` (its own process) connects over TLS
as the service user, `python -m sim` publishes an hour of New Year's Eve over TLS as the simulator user, the
alerts come out on crowdflow/alerts/# to an alert reader, and a sensor's spoofed reading for another sensor
never reaches the service."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.loader import load_site
from domain.messages import ALERT_TOPIC_PREFIX
from tests.security.conftest import Client, SecuredMosquitto, connect, start_secured_mosquitto
from tests.servers import REPO, ServiceProcess, free_port


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[SecuredMosquitto]:
    b = start_secured_mosquitto(tmp_path / "broker", load_site())  # the shipped site: the service's default
    yield b
    b.stop()


@pytest.fixture
def service(tmp_path: Path, site_broker: SecuredMosquitto, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceProcess]:
    creds = site_broker.creds
    assert creds.tls is not None
    port = free_port()
    cfg = tmp_path / "crowdflow.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {site_broker.tls_port}\nusername = "crowdflow"\n'
        'publisher_username = "crowdflow-out"\n'  # its own user: the broker ties client ids to user names
        f'tls = true\nca_file = "{creds.tls.ca_file}"\nclient_id = "cf-secure-e2e"\n'
        f'[service]\nclock = "sim"\ndata_dir = "{tmp_path / "var"}"\ntick_s = 5\n'
        f"[dashboard]\nport = {port}\npush_port = {free_port()}\n"
    )
    # The password through the environment, not the config file: what a deployment's secret store would do.
    monkeypatch.setenv("CROWDFLOW_MQTT_PASSWORD", creds.password("crowdflow"))
    monkeypatch.setenv("CROWDFLOW_MQTT_PUBLISHER_PASSWORD", creds.password("crowdflow-out"))
    svc = ServiceProcess(cfg, port, tmp_path / "service.log")
    svc.start()
    yield svc
    svc.stop()


def _ingest(svc: ServiceProcess) -> dict[str, Any]:
    return dict(svc.health()["pipeline"]["ingest"])


def _wait_received(svc: ServiceProcess, at_least: int) -> int:
    deadline = time.monotonic() + 120
    while (got := int(_ingest(svc)["received"])) < at_least:
        assert time.monotonic() < deadline, f"the service received {got} of {at_least} messages"
        time.sleep(0.3)
    return got


@pytest.mark.integration
def test_service_and_simulator_on_the_authenticated_tls_broker(
    tmp_path: Path, site_broker: SecuredMosquitto, service: ServiceProcess, clients: list[Client]
) -> None:
    creds = site_broker.creds
    assert creds.tls is not None
    reader = connect(
        site_broker.tls_port, "alerts-reader", creds.password("alerts-reader"), tls=True, ca_file=creds.tls.ca_file
    )
    clients.append(reader)
    reader.subscribe(f"{ALERT_TOPIC_PREFIX}/#")

    sim = subprocess.run(
        [sys.executable, "-m", "sim", "run", "nye", "--start", "23:00", "--duration", "3600", "--speed", "0",
         "--host", "127.0.0.1", "--port", str(site_broker.tls_port), "--username", "crowdflow-sim",
         "--password-file", str(creds.password_file("crowdflow-sim")), "--ca-file", str(creds.tls.ca_file),
         "--out", str(tmp_path / "truth")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr[-2000:]
    sent = int(json.loads(sim.stdout)["messages"])
    assert sent > 10_000  # an hour of the district: 175 readings a minute and status messages
    received = _wait_received(service, sent)
    assert received == sent
    ingest = _ingest(service)
    assert ingest["accepted"] > 0.95 * sent, ingest
    reader.wait("an alert on crowdflow/alerts/#", lambda: len(reader.messages) > 0)
    zones = {t.rsplit("/", 1)[1] for t in reader.topics()}
    assert zones <= set(load_site().zones), zones

    # A sensor spoofing another's reading: the broker drops it, the service never counts it. Its own reading,
    # sent after, reaches the service: when that is counted, the spoof would have been counted before it.
    site = load_site()
    a, b = list(site.sensors)[:2]
    grid = site.zones[site.sensors[b].zone].grid
    sensor = connect(site_broker.tls_port, a, creds.password(a), tls=True, ca_file=creds.tls.ca_file)
    clients.append(sensor)
    sensor.publish(f"dt/crowdflow/{grid}/{site.sensors[b].zone}/{b}/status", b'{"sensor": "%s"}' % b.encode())
    own_grid = site.zones[site.sensors[a].zone].grid
    sensor.publish(f"dt/crowdflow/{own_grid}/{site.sensors[a].zone}/{a}/status", b'{"sensor": "%s"}' % a.encode())
    after = _wait_received(service, received + 1)
    assert after == received + 1, f"the service counted {after - received} messages; only the sensor's own is allowed"

    secret = creds.password("crowdflow")
    assert secret not in service.log.read_text(errors="replace")
    assert secret not in site_broker.log_text()
    assert creds.password("crowdflow-sim") not in sim.stdout + sim.stderr
