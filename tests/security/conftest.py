"""A real Mosquitto running the shipped configuration (deploy/mosquitto/mosquitto.conf) with a site's generated
users, ACL, password file and TLS test certificates, on free loopback ports in the test's temp dir, and small
paho clients to poke at it.

Never skipped: without mosquitto, mosquitto_passwd or openssl the tests fail saying what to install.

Absence of a message is checked without waiting for time to pass: Mosquitto handles one client's packets in
order and routes a message to every subscriber before it reads the next packet, so a later message (a marker)
or a SUBACK reaching a client proves an earlier forbidden message would have reached it first.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from crowdflow.broker import SHIPPED_CONFIG, SIMULATOR_USER, Credentials, render_config, write_credentials
from domain.site import Site
from tests.servers import Server, free_port, require_binary

TIMEOUT_S = 20.0  # only ever a bound on waiting for something that must happen


@dataclass
class SecuredMosquitto(Server):
    """tests/servers.py's Server (its start and stop), on the shipped configuration: `port` is the TLS
    listener's, the last one the configuration opens."""

    creds: Credentials
    plain_port: int
    log: Path

    @property
    def tls_port(self) -> int:
        return self.port

    def reload(self) -> None:
        """SIGHUP: the broker reads its password file and ACL again."""
        self.proc.send_signal(1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_secured_mosquitto(workdir: Path, site: Site) -> SecuredMosquitto:
    binary = require_binary("mosquitto", "mosquitto")
    require_binary("mosquitto_passwd", "mosquitto")
    require_binary("openssl", "openssl")
    creds = write_credentials(site, workdir / "creds", simulator=SIMULATOR_USER)
    plain, tls = free_port(), free_port()
    data, log = workdir / "data", workdir / "mosquitto.log"
    data.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        render_config(SHIPPED_CONFIG.read_text(), creds, plain_port=plain, tls_port=tls, data_dir=data, log_file=log)
    )
    argv = [binary, "-c", str(conf)]
    broker = SecuredMosquitto("127.0.0.1", tls, None, workdir, conf, argv, creds, plain, log)  # type: ignore[arg-type]
    try:
        # Mosquitto binds its listeners in the order of the configuration, plain before TLS, before it serves
        # either: once the TLS port answers, both are there (the connection below checks it).
        broker.start()
        socket.create_connection(("127.0.0.1", plain), TIMEOUT_S).close()
    except (RuntimeError, OSError) as err:
        if broker.proc is not None:
            broker.stop()
        said = (workdir / "server.log").read_text(errors="replace") + broker.log_text()  # config errors go to stderr
        raise RuntimeError(f"mosquitto on the shipped config: {err}\n{said}") from err
    return broker


@pytest.fixture
def broker(tmp_path: Path, mini_site: Site) -> Iterator[SecuredMosquitto]:
    b = start_secured_mosquitto(tmp_path / "broker", mini_site)
    yield b
    b.stop()


@dataclass
class Client:
    """A paho client that records what it receives and the broker's answers."""

    client: paho.Client
    connack: ReasonCode | None = None
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    subacks: int = 0
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)  # mid -> the broker's answer
    disconnects: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, what: str, pred: Any) -> None:
        with self.cond:
            if not self.cond.wait_for(pred, TIMEOUT_S):
                raise AssertionError(f"timed out waiting for {what}")

    def topics(self) -> list[str]:
        with self.cond:
            return [t for t, _, _ in self.messages]

    def subscribe(self, topic: str) -> None:
        n = self.subacks
        self.client.subscribe(topic, qos=1)
        self.wait(f"SUBACK for {topic}", lambda: self.subacks > n)

    def sync(self) -> None:
        """Round trip through the broker: whatever it sent us before is in `messages` after this."""
        self.subscribe("crowdflow/test/sync")

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> ReasonCode | None:
        """QoS 1 and wait for the PUBACK; its reason code under MQTT 5 (None under 3.1.1)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.wait(f"PUBACK for {topic}", lambda: info.mid in self.pubacks)
        rc = self.pubacks[info.mid]
        return rc if self.client.protocol == paho.MQTTv5 else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    port: int,
    user: str | None = None,
    password: str | None = None,
    *,
    tls: bool = False,
    ca_file: Path | None = None,
    v5: bool = False,
    expect_refused: bool = False,
    client_id: str = "",
) -> Client:
    proto = paho.MQTTv5 if v5 else paho.MQTTv311
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto)
    c.reconnect_delay_set(60, 60)  # a refused client must not retry during the test
    rec = Client(c)

    def on_connect(_c: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Properties | None) -> None:
        with rec.cond:
            rec.connack = rc
            rec.cond.notify_all()

    def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        with rec.cond:
            rec.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
            rec.cond.notify_all()

    def on_subscribe(_c: paho.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        with rec.cond:
            rec.subacks += 1
            rec.cond.notify_all()

    def on_publish(_c: paho.Client, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with rec.cond:
            rec.pubacks[mid] = rc
            rec.cond.notify_all()

    def on_disconnect(_c: paho.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        with rec.cond:
            rec.disconnects += 1
            rec.cond.notify_all()

    c.on_connect, c.on_message, c.on_subscribe, c.on_publish = on_connect, on_message, on_subscribe, on_publish
    c.on_disconnect = on_disconnect
    if user is not None:
        c.username_pw_set(user, password)
    if tls:
        c.tls_set(ca_certs=str(ca_file) if ca_file else None)
    c.connect("127.0.0.1", port, keepalive=30)  # TLS: the handshake (and a refused certificate) happens here
    c.loop_start()
    rec.wait("CONNACK", lambda: rec.connack is not None)
    assert rec.connack is not None
    if expect_refused:
        c.loop_stop()
        return rec
    assert not rec.connack.is_failure, f"{user} was refused: {rec.connack}"
    return rec


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        with contextlib.suppress(Exception):
            c.close()


def tls_refused(port: int) -> ssl.SSLError | None:
    """The error a TLS client that does not trust the broker's CA gets (system CAs only), or None."""
    try:
        connect(port, "x", "y", tls=True, expect_refused=True)
    except ssl.SSLError as e:
        return e
    return None
