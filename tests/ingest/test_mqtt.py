"""The MQTT edge against a real Mosquitto (tests/servers.py): receive, survive a broker restart, publish."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from domain.clock import ManualClock
from domain.messages import DEADLETTER_TOPIC, SUBSCRIPTION
from ingest.mqtt import (
    MqttPublisher,
    MqttSettings,
    MqttSettingsError,
    SubscriberStats,
    _refused,
    deadletter_payload,
    subscribe_forever,
)
from ingest.pipeline import Ingestor
from ingest.rejection import Rejection
from tests.ingest.helpers import T0, count, site_with_area
from tests.servers import Server, until


def paho_publish(port: int, msgs: list[tuple[str, bytes]], qos: int = 1) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish(t, p, qos=qos) for t, p in msgs]
        for info in infos:
            info.wait_for_publish(5)
            assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


class PahoCollector:
    """A plain paho subscriber with a persistent session, to check what our publisher sent."""

    def __init__(self, port: int, topic: str) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self._subscribed = threading.Event()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-collector", clean_session=False)
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload), bool(m.retain)))
        self.c.on_subscribe = lambda *_a: self._subscribed.set()
        self.c.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self._subscribed.wait(5), "collector did not subscribe"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def settings_for(srv: Server, client_id: str) -> MqttSettings:
    return MqttSettings(host=srv.host, port=srv.port, client_id=client_id)


class Running:
    """A subscriber task with what the tests watch: its states, its stats and its stop event."""

    def __init__(self, task: asyncio.Task[None], stop: asyncio.Event, states: list[str], stats: SubscriberStats):
        self.task, self.stop, self.states, self.stats = task, stop, states, stats


def start_subscriber(
    settings: MqttSettings,
    topics: list[str],
    handler: Callable[[str, bytes, float], None],
    *,
    clock: ManualClock,
    **kw: Any,
) -> Running:
    states: list[str] = []
    stats = SubscriberStats()
    stop = asyncio.Event()
    task = asyncio.create_task(
        subscribe_forever(settings, topics, handler, stop=stop, clock=clock, on_state=states.append, stats=stats, **kw)
    )
    return Running(task, stop, states, stats)


async def stopped_within(task: Awaitable[Any], seconds: float = 5.0) -> None:
    await asyncio.wait_for(task, seconds)


async def test_subscribe_forever_receives(mosquitto: Server) -> None:
    got: list[tuple[str, bytes, float]] = []
    sub = start_subscriber(
        settings_for(mosquitto, "crowdflow-test-sub"),
        [SUBSCRIPTION],
        lambda t, p, at: got.append((t, p, at)),
        clock=ManualClock(123.0),
    )
    states, stats, stop, task = sub.states, sub.stats, sub.stop, sub.task
    await until(lambda: "connected" in states, "the subscriber to connect")
    msgs = [count("seg1-west", i, T0 + 60 * i, i, 0) for i in range(1, 4)]
    await asyncio.to_thread(paho_publish, mosquitto.port, [*msgs, ("elsewhere/x", b"not ours")])
    await until(lambda: len(got) == 3, "3 messages")
    assert [(t, p) for t, p, _ in got] == msgs
    assert all(at == 123.0 for _, _, at in got)
    stop.set()
    await stopped_within(task)
    assert states[0] == "connecting" and states[-1] == "stopped"
    assert (stats.received, stats.connects, stats.reconnects, stats.dropped) == (3, 1, 0, 0)


async def test_reconnects_and_receives_what_was_published_while_away(mosquitto: Server) -> None:
    got: list[bytes] = []
    sub = start_subscriber(
        settings_for(mosquitto, "crowdflow-test-persistent"),
        [SUBSCRIPTION],
        lambda _t, p, _at: got.append(p),
        clock=ManualClock(0.0),
        reconnect_delay=6.0,  # long enough that a loaded machine publishes the 5 before the reconnect
    )
    states, stats, stop, task = sub.states, sub.stats, sub.stop, sub.task
    await until(lambda: "connected" in states, "the subscriber to connect")
    before = [count("seg1-west", i, T0 + 60 * i, i, 0) for i in (1, 2)]
    await asyncio.to_thread(paho_publish, mosquitto.port, before)
    await until(lambda: len(got) == 2, "the first 2 messages")

    await asyncio.to_thread(mosquitto.stop)
    await until(lambda: "disconnected" in states, "the subscriber to notice the broker is gone")
    await asyncio.to_thread(mosquitto.start)  # same port, same persistence file
    away = [count("seg1-west", i, T0 + 60 * i, i, 0) for i in range(3, 8)]
    await asyncio.to_thread(paho_publish, mosquitto.port, away)
    # The point of the test: these were published while our subscriber was not connected, so only the
    # broker's persistent session (clean_session=False, QoS 1) can deliver them.
    assert not stats.connected, "the subscriber reconnected before the messages were published; test is moot"

    await until(lambda: len(got) == 7, "the 5 messages published while away", timeout_s=30)
    assert got == [p for _, p in before + away]
    assert stats.connects == 2 and stats.reconnects >= 1 and stats.last_error
    assert states.count("connected") == 2
    stop.set()
    await stopped_within(task)


async def test_subscriber_retries_until_a_broker_appears(mosquitto: Server) -> None:
    await asyncio.to_thread(mosquitto.stop)
    sub = start_subscriber(
        settings_for(mosquitto, "crowdflow-test-late-broker"),
        [SUBSCRIPTION],
        lambda *_a: None,
        clock=ManualClock(0.0),
        reconnect_delay=0.1,
    )
    states, stats, stop, task = sub.states, sub.stats, sub.stop, sub.task
    await until(lambda: stats.reconnects >= 2, "failed connection attempts to be counted")
    assert "connected" not in states and "refused" in stats.last_error.lower()
    await asyncio.to_thread(mosquitto.start)
    await until(lambda: "connected" in states, "the subscriber to connect once the broker is up")
    stop.set()
    await stopped_within(task)


async def test_stop_while_disconnected_returns_promptly() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        subscribe_forever(
            MqttSettings(host="127.0.0.1", port=1, client_id="nobody"),
            [SUBSCRIPTION],
            lambda *_a: None,
            stop=stop,
            clock=ManualClock(0.0),
            reconnect_delay=30.0,
        )
    )
    await asyncio.sleep(0.2)
    stop.set()
    await stopped_within(task, 2.0)


async def test_handler_errors_are_counted_and_do_not_stop_the_loop(mosquitto: Server) -> None:
    got: list[bytes] = []

    def handle(_t: str, p: bytes, _at: float) -> None:
        if p == b"boom":
            raise ValueError("handler bug")
        got.append(p)

    sub = start_subscriber(settings_for(mosquitto, "crowdflow-test-errors"), ["t/#"], handle, clock=ManualClock(0.0))
    states, stats, stop, task = sub.states, sub.stats, sub.stop, sub.task
    await until(lambda: "connected" in states, "connect")
    await asyncio.to_thread(paho_publish, mosquitto.port, [("t/a", b"1"), ("t/a", b"boom"), ("t/a", b"2")])
    await until(lambda: len(got) == 2, "the good messages")
    assert stats.handler_errors == 1 and stats.received == 3
    stop.set()
    await stopped_within(task)


async def test_a_slow_consumer_with_a_tiny_queue_loses_nothing_at_qos1(mosquitto: Server) -> None:
    n = 300
    got: list[bytes] = []

    def slow(_t: str, p: bytes, _at: float) -> None:
        time.sleep(0.0005)  # a consumer slower than the network
        got.append(p)

    sub = start_subscriber(
        settings_for(mosquitto, "crowdflow-test-slow"),
        ["t/#"],
        slow,
        clock=ManualClock(0.0),
        max_queued=5,  # binds QoS 0 only: QoS 1 waits at the broker until we acknowledge
    )
    states, stats, stop, task = sub.states, sub.stats, sub.stop, sub.task
    await until(lambda: "connected" in states, "connect")
    await asyncio.to_thread(paho_publish, mosquitto.port, [("t/x", str(i).encode()) for i in range(n)])
    await until(lambda: len(set(got)) == n, "every message")
    stop.set()
    await stopped_within(task)
    assert set(got) == {str(i).encode() for i in range(n)}
    assert stats.dropped == 0 and stats.acked == stats.received == len(got)


async def test_publisher_delivers_in_order(mosquitto: Server) -> None:
    collector = await asyncio.to_thread(PahoCollector, mosquitto.port, "crowdflow/#")
    try:
        pub = MqttPublisher()
        msgs = [(f"crowdflow/state/z{i % 3}", f"{i}".encode()) for i in range(250)]
        for t, p in msgs:
            assert pub.publish(t, p)
        assert pub.publish("crowdflow/alerts/z1", b'{"level":2}', retain=True)
        stop = asyncio.Event()
        task = asyncio.create_task(pub.run(settings_for(mosquitto, "crowdflow-test"), stop))
        await until(lambda: len(collector.got) == 251, "251 messages at the collector")
        assert [(t, p) for t, p, _ in collector.got[:250]] == msgs
        assert collector.got[250] == ("crowdflow/alerts/z1", b'{"level":2}', False)  # live: retain flag unset
        await until(lambda: pub.stats.published == 251, "the broker's acknowledgements")
        assert (pub.stats.dropped, pub.pending) == (0, 0)
        # Published after run() started: the queue wakes the sender.
        pub.publish("crowdflow/state/late", b"x")
        await until(lambda: len(collector.got) == 252, "a message queued while running")
        stop.set()
        await stopped_within(task)
    finally:
        collector.close()
    # The retained alert is there for a newcomer.
    late = await asyncio.to_thread(PahoCollector, mosquitto.port, "crowdflow/alerts/#")
    try:
        await until(lambda: len(late.got) == 1, "the retained alert")
        assert late.got[0] == ("crowdflow/alerts/z1", b'{"level":2}', True)
    finally:
        late.close()


async def test_publisher_counts_drops_when_full() -> None:
    pub = MqttPublisher(max_queued=3)
    results = [pub.publish("crowdflow/state/z", b"%d" % i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert (pub.stats.queued, pub.stats.dropped, pub.pending) == (3, 2, 3)


async def test_publisher_keeps_unsent_messages_across_a_broker_outage(mosquitto: Server) -> None:
    collector = await asyncio.to_thread(PahoCollector, mosquitto.port, "crowdflow/#")
    try:
        await asyncio.to_thread(mosquitto.stop)
        pub = MqttPublisher(reconnect_delay=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(pub.run(settings_for(mosquitto, "crowdflow-test-outage"), stop))
        for i in range(5):
            pub.publish("crowdflow/state/z", b"%d" % i)
        await until(lambda: pub.stats.errors >= 1, "a failed connection attempt")
        assert pub.pending == 5
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: len(collector.got) == 5, "the 5 queued messages after the broker came back", 15)
        assert [p for _, p, _ in collector.got] == [b"%d" % i for i in range(5)]
        stop.set()
        await stopped_within(task)
    finally:
        collector.close()


async def test_dead_letters_from_the_ingestor(mosquitto: Server) -> None:
    collector = await asyncio.to_thread(PahoCollector, mosquitto.port, DEADLETTER_TOPIC)
    try:
        pub = MqttPublisher()
        ing = Ingestor(site_with_area(), on_reject=pub.deadletter)
        t, p = count("seg1-west", 1, T0, 1, 0)
        ing.feed(t, p, T0)
        ing.feed(t, p, T0 + 1)  # duplicate
        ing.feed(t, b"\xff{oops", T0 + 2)
        assert pub.pending == 2
        stop = asyncio.Event()
        task = asyncio.create_task(pub.run(settings_for(mosquitto, "crowdflow-test-dl"), stop))
        await until(lambda: len(collector.got) == 2, "2 dead letters")
        stop.set()
        await stopped_within(task)
    finally:
        collector.close()
    first, second = (json.loads(p) for _, p, _ in collector.got)
    assert first["reason"] == "duplicate" and first["sensor"] == "seg1-west" and first["received_at"] == T0 + 1
    assert second["reason"] == "malformed_json" and second["payload"].endswith("{oops")
    assert set(first) == {"v", "reason", "detail", "topic", "payload", "sensor", "received_at"}


def test_deadletter_payload_shape() -> None:
    rej = Rejection(reason="schema", detail="d", topic="dt/x", payload="{}", sensor=None, received_at=5.0)
    assert json.loads(deadletter_payload(rej)) == {
        "v": 1,
        "reason": "schema",
        "detail": "d",
        "topic": "dt/x",
        "payload": "{}",
        "sensor": None,
        "received_at": 5.0,
    }


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"port": 0}, "port"),
        ({"client_id": ""}, "client_id"),
        ({"qos": 3}, "qos"),
        ({"keepalive": 0}, "keepalive"),
        ({"ca_file": "/nonexistent.pem"}, "tls is off"),
        ({"tls": True, "ca_file": "/nonexistent.pem"}, "does not exist"),
    ],
)
def test_settings_validate_themselves(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(MqttSettingsError, match=needle):
        MqttSettings(**kw)


def test_settings_tls_context() -> None:
    assert MqttSettings().tls_context() is None
    assert MqttSettings(tls=True).tls_context() is not None


def test_refused_subscription_codes() -> None:
    # Mosquitto 2.0 grants every subscription and filters by ACL at delivery, so this is checked on codes:
    # brokers that refuse (EMQX, HiveMQ, Mosquitto with other settings) answer 0x80 or a failure ReasonCode.
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    assert _refused(0x80) and not _refused(1) and not _refused(0)
    assert _refused(ReasonCode(PacketTypes.SUBACK, identifier=0x87))  # not authorised
    assert not _refused(ReasonCode(PacketTypes.SUBACK, identifier=1))  # granted QoS 1


async def test_cancelling_the_subscriber_closes_its_connection(mosquitto: Server) -> None:
    sub = start_subscriber(
        settings_for(mosquitto, "crowdflow-test-cancel"),
        [SUBSCRIPTION],
        lambda *_a: None,
        clock=ManualClock(0.0),
    )
    states, stats, task = sub.states, sub.stats, sub.task
    await until(lambda: "connected" in states, "connect")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    assert states[-1] == "stopped" and not stats.connected
    assert all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())
