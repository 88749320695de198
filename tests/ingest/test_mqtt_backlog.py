"""No acknowledged message is lost: a broker backlog against a slow subscriber, a stop in the middle of one, and
the queue's rules (QoS 0 bounded and counted, QoS 1 never refused). A real Mosquitto (tests/servers.py: its
max_inflight_messages is 100)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from domain.clock import ManualClock
from ingest.mqtt import MqttSettings, SubscriberStats, _counting_queue, _disconnected_of, _Inbox, _paho_of
from tests.ingest.test_mqtt import settings_for, start_subscriber, stopped_within, until
from tests.servers import Server

BROKER_INFLIGHT = 100  # max_inflight_messages in tests/servers.start_mosquitto's config


def publish_numbered(port: int, first: int, n: int, done: threading.Event | None = None) -> None:
    """Publish payloads b"first" .. b"first+n-1" on t/x at QoS 1 and wait for every PUBACK."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-flood-{time.monotonic_ns()}")
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        infos = [c.publish("t/x", b"%d" % i, qos=1) for i in range(first, first + n)]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()
        if done is not None:
            done.set()


def message(qos: int, payload: bytes = b"x") -> aiomqtt.Message:
    return aiomqtt.Message(topic="t/x", payload=payload, qos=qos, retain=False, mid=1, properties=None)


async def test_a_backlog_of_50000_qos1_messages_against_a_slow_subscriber_loses_none(mosquitto: Server) -> None:
    n = 50_000
    seen: list[int] = []
    published = threading.Event()
    handled = 0

    def slow(_t: str, p: bytes, _at: float) -> None:
        nonlocal handled
        if handled == 0:
            # Block the loop (so nothing is read) until all 50,000 are at the broker: the backlog is certain.
            assert published.wait(120), "the publisher did not finish"
        handled += 1
        if handled % 100 == 0:
            time.sleep(0.001)  # and stay slower than the network
        seen.append(int(p))

    sub = start_subscriber(
        settings_for(mosquitto, "crowdflow-test-backlog"),
        ["t/#"],
        slow,
        clock=ManualClock(0.0),
        max_queued=1_000,  # well under the backlog: a queue that took everything the broker sent would overflow
    )
    stats, stop, task = sub.stats, sub.stop, sub.task
    await until(lambda: "connected" in sub.states, "the subscriber to connect")
    publisher = asyncio.create_task(asyncio.to_thread(publish_numbered, mosquitto.port, 0, n, published))
    await until(lambda: len(set(seen)) == n, f"all {n} messages", within=300)
    await publisher
    stop.set()
    await stopped_within(task)

    assert set(seen) == set(range(n))  # every one at least once
    assert stats.dropped == 0
    assert stats.acked == stats.received == len(seen)
    # Acknowledged only after handling, so the broker stopped at its in-flight window: the backlog waited at
    # the broker, never in our queue (a batch is everything queued at a wake-up, up to 500).
    assert stats.largest_batch <= BROKER_INFLIGHT
    print(f"\n{n} QoS 1 behind a slow handler: {stats.batches} batches, largest {stats.largest_batch}, "
          f"{len(seen) - n} duplicates")


async def test_a_stop_in_the_middle_of_a_backlog_loses_nothing(mosquitto: Server) -> None:
    """What was received but not handled at a stop was never acknowledged: the broker sends it again."""
    n = 5_000
    seen: list[int] = []

    def record(_t: str, p: bytes, _at: float) -> None:
        seen.append(int(p))
        if len(seen) == 1_000:
            first.stop.set()  # stop mid-backlog; the current batch finishes, the rest stays queued

    settings = settings_for(mosquitto, "crowdflow-test-stop-mid-backlog")
    first = start_subscriber(settings, ["t/#"], record, clock=ManualClock(0.0), batch=1)
    await until(lambda: "connected" in first.states, "the first subscriber to connect")
    await asyncio.to_thread(publish_numbered, mosquitto.port, 0, n)
    await stopped_within(first.task, 30)
    assert 1_000 <= len(seen) < n, "the first run should have stopped part way"
    print(f"\nstopped after {len(seen)}; {first.stats.left_at_stop} received but not handled")

    second = start_subscriber(settings, ["t/#"], record, clock=ManualClock(0.0))
    await until(lambda: len(set(seen)) == n, f"the rest of the {n} messages", within=60)
    second.stop.set()
    await stopped_within(second.task)
    assert set(seen) == set(range(n))
    assert first.stats.dropped == second.stats.dropped == 0


async def test_qos0_over_the_bound_is_dropped_and_counted(mosquitto: Server) -> None:
    """QoS 0 has no acknowledgement and so no backpressure: past max_queued it is refused, never silently."""
    n = 2_000
    got: list[bytes] = []
    published = threading.Event()

    def blocked_then_fast(_t: str, p: bytes, _at: float) -> None:
        if not got:
            assert published.wait(60), "the publisher did not finish"
        got.append(p)

    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="crowdflow-test-qos0", qos=0)
    sub = start_subscriber(settings, ["t/#"], blocked_then_fast, clock=ManualClock(0.0), max_queued=5)
    await until(lambda: "connected" in sub.states, "connect")

    def publish_qos0() -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-qos0-pub")
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        try:
            infos = [c.publish("t/x", b"%d" % i, qos=0) for i in range(n)]
            for info in infos:
                info.wait_for_publish(30)
        finally:
            c.disconnect()
            c.loop_stop()
            published.set()

    await asyncio.to_thread(publish_qos0)
    await until(lambda: sub.stats.received + sub.stats.dropped >= n, "every message handled or counted as dropped",
                within=60)
    sub.stop.set()
    await stopped_within(sub.task)
    # The broker itself may drop QoS 0 for a client that reads nothing (its queue limits), so only ours count.
    assert sub.stats.received + sub.stats.dropped <= n
    assert sub.stats.acked == 0
    print(f"\nQoS 0, queue of 5: received {sub.stats.received}, dropped {sub.stats.dropped}")


# --- the queue ---------------------------------------------------------------------------------------------


def test_the_queue_refuses_qos0_past_the_bound_and_counts_it() -> None:
    stats = SubscriberStats()
    made: list[_Inbox] = []
    q = _counting_queue(stats, 2, made)(maxsize=0)
    assert made == [q]
    q.put_nowait(message(0))
    q.put_nowait(message(0))
    with pytest.raises(asyncio.QueueFull):
        q.put_nowait(message(0))
    assert (stats.dropped, q.qsize()) == (1, 2)


def test_the_queue_never_refuses_qos1_and_says_once_that_the_broker_sends_too_much(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = SubscriberStats()
    q = _counting_queue(stats, 2, [])(maxsize=0)
    with caplog.at_level(logging.WARNING, logger="crowdflow.ingest.mqtt"):
        for qos in (1, 1, 1, 2, 1):
            q.put_nowait(message(qos))
    assert (stats.dropped, q.qsize()) == (0, 5)
    warnings = [r for r in caplog.records if "max_inflight_messages" in r.getMessage()]
    assert len(warnings) == 1


async def test_the_queue_wakes_its_drain_on_a_message_and_on_a_lost_connection() -> None:
    stats = SubscriberStats()
    q = _counting_queue(stats, 10, [])(maxsize=0)
    loop = asyncio.get_running_loop()
    disconnected: asyncio.Future[None] = loop.create_future()
    disconnected.add_done_callback(q.wake)

    waiting = asyncio.create_task(q.wait(disconnected))
    await asyncio.sleep(0)
    assert not waiting.done()
    q.put_nowait(message(1))
    await waiting
    q.get_nowait()

    waiting = asyncio.create_task(q.wait(disconnected))
    await asyncio.sleep(0)
    assert not waiting.done()
    disconnected.set_exception(aiomqtt.MqttError("gone"))
    await waiting
    assert q.empty()
    disconnected.exception()  # retrieved: no "exception never retrieved" warning


async def test_the_installed_aiomqtt_wraps_a_paho_client_with_manual_acks() -> None:
    """The hooks ingest/mqtt.py reaches into aiomqtt for (no public manual-ack option in aiomqtt 2.x)."""
    client = MqttSettings().client(client_id="hooks", clean_session=False)
    inner = _paho_of(client)
    inner.manual_ack_set(True)
    assert isinstance(inner, paho.Client)
    assert isinstance(_disconnected_of(client), asyncio.Future)
