"""The TLS listener of the shipped configuration: a client that trusts the site's CA connects, one that does
not is refused, plain MQTT on the TLS port gets nowhere; the simulator's sink over TLS."""

from __future__ import annotations

import socket
import ssl

import pytest

from domain.messages import SUBSCRIPTION
from sim.mqtt import BrokerUnavailable, MqttAuth, MqttSink
from tests.security.conftest import Client, SecuredMosquitto, connect, tls_refused


def test_a_client_with_the_ca_connects_and_publishes_over_tls(broker: SecuredMosquitto, clients: list[Client]) -> None:
    assert broker.creds.tls is not None
    ca = broker.creds.tls.ca_file
    service = connect(broker.tls_port, "crowdflow", broker.creds.password("crowdflow"), tls=True, ca_file=ca)
    clients.append(service)
    service.subscribe(SUBSCRIPTION)
    sensor = connect(broker.tls_port, "seg1-west", broker.creds.password("seg1-west"), tls=True, ca_file=ca)
    clients.append(sensor)
    sensor.publish("dt/crowdflow/riverside/seg-1/seg1-west/count", b"{}")
    service.wait("the reading over TLS", lambda: len(service.messages) == 1)
    tls = sensor.client.socket()
    assert isinstance(tls, ssl.SSLSocket) and tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_client_without_the_ca_is_refused(broker: SecuredMosquitto) -> None:
    err = tls_refused(broker.tls_port)
    assert isinstance(err, ssl.SSLCertVerificationError), err


def test_plain_mqtt_on_the_tls_port_gets_no_connack(broker: SecuredMosquitto) -> None:
    # CONNECT, MQTT 3.1.1, clean session, keepalive 30, client id "test"
    connect_packet = bytes.fromhex("101000044d5154540402001e000474657374")
    with socket.create_connection(("127.0.0.1", broker.tls_port), timeout=10) as s:
        s.sendall(connect_packet)
        try:
            answer = s.recv(16)
        except ConnectionResetError:
            answer = b""
    assert answer == b"", f"the TLS listener answered plain MQTT with {answer!r}"  # closed: no CONNACK


def test_the_simulator_sink_authenticates_over_tls(broker: SecuredMosquitto, clients: list[Client]) -> None:
    assert broker.creds.tls is not None
    ca = broker.creds.tls.ca_file
    service = connect(broker.plain_port, "crowdflow", broker.creds.password("crowdflow"))
    clients.append(service)
    service.subscribe(SUBSCRIPTION)
    auth = MqttAuth(
        username="crowdflow-sim", password=broker.creds.password("crowdflow-sim"), ca_file=str(ca), tls=True
    )
    sink = MqttSink("127.0.0.1", broker.tls_port, auth=auth, connect_timeout_s=10)
    try:
        assert sink.publish("dt/crowdflow/riverside/seg-1/seg1-west/count", b"{}")
        assert sink.drain(10)
    finally:
        sink.close()
    service.wait("the simulator's message", lambda: len(service.messages) == 1)
    assert broker.creds.password("crowdflow-sim") not in repr(auth)  # never in a log line


def test_the_simulator_sink_says_why_it_was_refused(broker: SecuredMosquitto) -> None:
    wrong = MqttAuth(username="crowdflow-sim", password="not-the-password")
    with pytest.raises(BrokerUnavailable, match="refused user 'crowdflow-sim': Not authorized") as e:
        MqttSink("127.0.0.1", broker.plain_port, auth=wrong, connect_timeout_s=10)
    assert "not-the-password" not in str(e.value)
    untrusted = MqttAuth(username="crowdflow-sim", password=broker.creds.password("crowdflow-sim"), tls=True)
    with pytest.raises(BrokerUnavailable, match="TLS handshake failed"):
        MqttSink("127.0.0.1", broker.tls_port, auth=untrusted, connect_timeout_s=2)
