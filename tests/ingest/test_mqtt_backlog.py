"""No acknowledged message is lost: a broker backlog against a slow subscriber (plain and over TLS), a stop in
the middle of one, reads paused at the bound (backpressure at QoS 0 too), and the queue's rules. A real
Mosquitto (tests/servers.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from domain.clock import ManualClock
from ingest.mqtt import (
    MqttSettings,
    SubscriberStats,
    _counting_queue,
    _disconnected_of,
    _Inbox,
    _paho_of,
    subscribe_forever,
)
from tests.ingest.test_mqtt import settings_for, start_subscriber, stopped_within
from tests.servers import Server, free_port, start_mosquitto, until


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


async def drain_a_backlog(
    settings: MqttSettings, port: int, n: int, *, max_queued: int
) -> tuple[list[int], SubscriberStats]:
    """Publish n QoS 1 messages while the subscriber's loop is blocked in its first message, then let it drain
    them through a handler that stays slower than the network. Returns the seqs seen and the stats."""
    seen: list[int] = []
    published = threading.Event()
    handled = 0

    def slow(_t: str, p: bytes, _at: float) -> None:
        nonlocal handled
        if handled == 0:
            # Block the loop (so nothing is read) until all n are at the broker: the backlog is certain.
            assert published.wait(120), "the publisher did not finish"
        handled += 1
        if handled % 100 == 0:
            time.sleep(0.001)
        seen.append(int(p))

    sub = start_subscriber(settings, ["t/#"], slow, clock=ManualClock(0.0), max_queued=max_queued)
    await until(lambda: "connected" in sub.states, "the subscriber to connect")
    publisher = asyncio.create_task(asyncio.to_thread(publish_numbered, port, 0, n, published))
    await until(lambda: len(set(seen)) == n, f"all {n} messages", timeout_s=300)
    await publisher
    sub.stop.set()
    await stopped_within(sub.task)
    return seen, sub.stats


async def test_a_backlog_of_50000_qos1_messages_against_a_slow_subscriber_loses_none(mosquitto: Server) -> None:
    n, bound = 50_000, 50
    seen, stats = await drain_a_backlog(
        settings_for(mosquitto, "crowdflow-test-backlog"), mosquitto.port, n, max_queued=bound
    )
    assert set(seen) == set(range(n))  # every one at least once
    assert stats.dropped == 0
    assert stats.acked == stats.received == len(seen)
    # The broker sent more than `bound` at once (its in-flight window is 100, and Mosquitto 2.0.11 overshoots
    # it): reads paused, so the queue never held more than the bound; a batch is all that was queued.
    assert stats.read_pauses >= 1
    assert stats.largest_batch <= bound
    assert stats.batches < stats.received  # batches, not one wake-up per message
    print(
        f"\n{n} QoS 1 behind a slow handler: {stats.batches} batches, largest {stats.largest_batch}, "
        f"{stats.read_pauses} read pauses, {len(seen) - n} duplicates"
    )


async def test_a_backlog_over_tls_arrives_whole(tmp_path: Path) -> None:
    """Our reader in place of aiomqtt's, over TLS (which can hold decrypted bytes epoll does not announce; with
    Mosquitto writing one packet per TLS record this run does not force that case)."""
    ca = make_tls_files(tmp_path / "tls")
    srv = start_mosquitto(
        tmp_path / "mosquitto-tls", extra_conf=tls_listener(tmp_path / "tls", tls_port := free_port())
    )
    try:
        settings = MqttSettings(
            host="127.0.0.1", port=tls_port, client_id="crowdflow-test-tls", tls=True, ca_file=str(ca)
        )
        n = 10_000
        seen, stats = await drain_a_backlog(settings, srv.port, n, max_queued=1_000)
        assert set(seen) == set(range(n))
        assert stats.dropped == 0 and stats.connects == 1
    finally:
        srv.stop()


def make_tls_files(d: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl); returns the CA's PEM."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed for the TLS test (Debian package openssl)"
    d.mkdir(parents=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=crowdflow test CA",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return d / "ca.pem"


def tls_listener(d: Path, port: int) -> str:
    return f"listener {port} 127.0.0.1\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"


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
    await until(lambda: len(set(seen)) == n, f"the rest of the {n} messages", timeout_s=60)
    second.stop.set()
    await stopped_within(second.task)
    assert set(seen) == set(range(n))
    assert first.stats.dropped == second.stats.dropped == 0


async def test_qos0_past_the_bound_waits_at_the_broker(mosquitto: Server) -> None:
    """QoS 0 has no acknowledgement, so no in-flight window: reads pause at max_queued and the rest waits in
    TCP and at the broker; nothing is refused here."""
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
    await until(lambda: len(got) == n, "every message (the test broker queues without limit)", timeout_s=60)
    sub.stop.set()
    await stopped_within(sub.task)
    assert got == [b"%d" % i for i in range(n)]
    assert (sub.stats.dropped, sub.stats.acked) == (0, 0)
    assert sub.stats.read_pauses >= 1 and sub.stats.largest_batch <= 5


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


def test_the_queue_never_refuses_qos1() -> None:
    """Refused, a QoS 1 message would sit unacknowledged at the broker until the next reconnect."""
    stats = SubscriberStats()
    q = _counting_queue(stats, 2, [])(maxsize=0)
    for qos in (1, 1, 1, 2, 1):
        q.put_nowait(message(qos))
    assert (stats.dropped, q.qsize()) == (0, 5)


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


@pytest.mark.parametrize(("max_queued", "batch"), [(0, 500), (10, 0)])
async def test_a_subscriber_that_could_never_read_is_refused(max_queued: int, batch: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await subscribe_forever(
            MqttSettings(),
            ["t/#"],
            lambda *_a: None,
            stop=asyncio.Event(),
            clock=ManualClock(0.0),
            max_queued=max_queued,
            batch=batch,
        )
