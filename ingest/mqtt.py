"""The MQTT edge (aiomqtt 2.x): a subscriber that survives broker restarts and never loses a message it
acknowledged, and an off-path publisher.

Subscriber: a fixed client id with clean_session=False (an MQTT 3.1.1 persistent session) and QoS 1, so the
broker queues what arrives while we are away and delivers it when we come back. We subscribe again after every
(re)connect anyway: a broker that lost its state (no persistence, or a new broker) would otherwise send
nothing, silently.

Nothing acknowledged is ever dropped: at QoS 1 (and 2) `SubscriberStats.dropped` cannot move. By default
aiomqtt puts every incoming message in one queue and paho acknowledges it to the broker as it is read, before
anyone handled it; a bounded queue that fills drops acknowledged messages (DESIGN.md §5; 102,141 readings lost
in the memory benchmark at 10,000 sensors), an unbounded one grows with the broker's whole backlog, and either
way a stop or a crash loses what was queued. So, two things:
- Manual acknowledgements (paho 2.x): each QoS 1/2 message is acknowledged after the handler processed it. A
  message we hold is one the broker still holds, so a stop, a crash or a broken connection loses nothing: the
  broker sends it again (at least once; the ingestor rejects the repeats as duplicates by seq). aiomqtt 2.x
  has no option for it (aiomqtt issue #345): we switch it on in the paho client it wraps (`_paho_of`).
- Reads pause while `max_queued` messages wait (`_Reader`), so the queue never refuses a QoS 1 message and
  memory stays bounded: TCP fills and the backlog stays at the broker. The broker's in-flight window
  (Mosquitto's max_inflight_messages) would be the natural bound with manual acks, but Mosquitto 2.0.11 (this
  machine's) does not hold to it once acknowledgements flow: with a window of 100 and the first 200 messages
  acknowledged it sent 1,177, not 300; our subscriber, acknowledging as it went, once held 500 unacknowledged
  (in-flight quota fixes came in 2.0.13, eclipse-mosquitto/mosquitto#2362). Pausing reads also keeps QoS 0
  within the bound; `dropped` counts the QoS 0 messages refused if one ever gets past it.
The broker's own limits still apply: with Mosquitto's max_queued_messages (1,000 by default) a backlog beyond
it is dropped at the broker, which we cannot see; size it for the longest outage to ride out.

Draining: aiomqtt's reader takes one packet per loop turn and `async for message in client.messages` costs a
task and an asyncio.wait per message (2-3 loop turns each), so under a backlog the queue only grew. `_Reader`
reads up to `batch` packets each time the socket is readable; the drain takes everything queued (up to
`batch`, then yields to the loop so the dashboard and the ticker run) with get_nowait() on one future per
wake-up and hands it to the handler. The handler is called synchronously and must not await anything.

Publisher: dead letters, alerts and zone state go out through `MqttPublisher`, which has its own client and
a bounded queue, so a slow or absent broker never blocks the ingest path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import aiomqtt
import msgspec
import paho.mqtt.client as paho_mqtt

from domain.clock import Clock
from domain.messages import DEADLETTER_TOPIC, VERSION
from ingest.rejection import Rejection

log = logging.getLogger("crowdflow.ingest.mqtt")

MAX_RECONNECT_DELAY_S = 10.0


class MqttSettingsError(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class MqttSettings:
    """Where and how to connect. Field names match the service config's [mqtt] section."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    client_id: str = "crowdflow-service"  # fixed: the broker keeps our session under this id
    qos: int = 1
    keepalive: int = 60
    tls: bool = False
    ca_file: str = ""  # PEM bundle to verify the broker; empty: the system's CAs
    # Client certificate and key (PEM) for a broker that requires them (require_certificate true).
    cert_file: str = ""
    key_file: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not self.host:
            problems.append("host is empty")
        if not 0 < self.port < 65536:
            problems.append(f"port {self.port} is not 1-65535")
        if not self.client_id:
            problems.append("client_id is empty; a persistent session needs a fixed client id")
        if self.qos not in (0, 1, 2):
            problems.append(f"qos {self.qos} is not 0, 1 or 2")
        if self.keepalive <= 0:
            problems.append(f"keepalive {self.keepalive} must be > 0 seconds")
        if self.ca_file and not self.tls:
            problems.append("ca_file is set but tls is off; set tls = true or drop ca_file")
        if self.ca_file and not Path(self.ca_file).is_file():
            problems.append(f"ca_file {self.ca_file} does not exist")
        if (self.cert_file or self.key_file) and not self.tls:
            problems.append("cert_file/key_file are set but tls is off; set tls = true or drop them")
        if self.key_file and not self.cert_file:
            problems.append("key_file is set without cert_file; set both (the key alone proves nothing)")
        for name, path in (("cert_file", self.cert_file), ("key_file", self.key_file)):
            if path and not Path(path).is_file():
                problems.append(f"{name} {path} does not exist")
        if problems:
            raise MqttSettingsError("MQTT settings: " + "; ".join(problems))

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx

    def client(
        self,
        *,
        client_id: str,
        clean_session: bool,
        max_queued_incoming: int = 0,
        queue_type: type | None = None,
    ) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username or None,
            password=self.password or None,
            identifier=client_id,
            clean_session=clean_session,
            keepalive=self.keepalive,
            tls_context=self.tls_context(),
            max_queued_incoming_messages=max_queued_incoming,
            queue_type=queue_type,
            logger=log,
        )


@dataclass
class SubscriberStats:
    received: int = 0  # messages handed to the handler
    acked: int = 0  # QoS 1/2 messages acknowledged to the broker, each after the handler returned
    dropped: int = 0  # QoS 0 messages refused because `max_queued` were waiting (never QoS 1/2: module docstring)
    left_at_stop: int = 0  # queued but not handled when the subscriber stopped (QoS 1/2 ones come again)
    batches: int = 0  # wake-ups that handed messages to the handler
    read_pauses: int = 0  # reads stopped because `max_queued` messages were waiting (backpressure)
    largest_batch: int = 0
    handler_errors: int = 0  # the handler raised (a bug: logged with its traceback, the loop goes on)
    connects: int = 0  # successful connections, the first one included
    reconnects: int = 0  # connection losses or failed attempts followed by a retry
    last_error: str = ""
    connected: bool = False


class _Inbox(asyncio.Queue[aiomqtt.Message]):
    """The queue aiomqtt fills, with a wake-up for the drain that costs one future, not a task. `_Reader`
    stops reading at `max_queued`, so it holds no more than that; only messages read past it some other way
    (aiomqtt's own reader before ours takes over) meet the bound here: QoS 0 ones are refused and counted,
    QoS 1/2 ones kept (refused, they would sit unacknowledged at the broker until the next reconnect).
    aiomqtt builds it itself (`queue_type(maxsize=...)`): `_counting_queue` makes the subclass to pass."""

    stats: ClassVar[SubscriberStats]
    max_qos0: ClassVar[int]
    made: ClassVar[list[_Inbox]]  # every instance, so the subscriber can reach the one its client built

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__()  # maxsize 0 whatever aiomqtt asks: put_nowait below is the only bound
        self._waiter: asyncio.Future[None] | None = None
        self.made.append(self)

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if item.qos == 0 and self.qsize() >= self.max_qos0:
            self.stats.dropped += 1
            raise asyncio.QueueFull  # aiomqtt logs it and discards the message
        super().put_nowait(item)
        self.wake()

    def wake(self, _done: object = None) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, disconnected: asyncio.Future[None]) -> None:
        """Until something is queued or the connection is gone."""
        while self.empty() and not disconnected.done():
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


def _counting_queue(stats: SubscriberStats, max_qos0: int, made: list[_Inbox]) -> type[_Inbox]:
    """The queue type for aiomqtt's `queue_type`; each instance it builds lands in `made`."""

    class CountingQueue(_Inbox):
        pass

    CountingQueue.stats, CountingQueue.max_qos0, CountingQueue.made = stats, max_qos0, made
    return CountingQueue


def _paho_of(client: aiomqtt.Client) -> paho_mqtt.Client:
    """The paho client inside aiomqtt 2.x's Client (a private attribute: aiomqtt has no manual-ack option)."""
    inner = getattr(client, "_client", None)
    if not isinstance(inner, paho_mqtt.Client) or not hasattr(inner, "manual_ack_set"):
        raise RuntimeError(
            f"aiomqtt {getattr(aiomqtt, '__version__', '?')} does not wrap a paho-mqtt 2.x client as "
            "Client._client; manual acknowledgements (ingest/mqtt.py) need aiomqtt 2.x over paho-mqtt 2.x"
        )
    return inner


def _disconnected_of(client: aiomqtt.Client) -> asyncio.Future[None]:
    """aiomqtt's future that completes when the connection is lost (what its messages iterator waits on)."""
    fut = getattr(client, "_disconnected", None)
    if not isinstance(fut, asyncio.Future):
        raise RuntimeError("aiomqtt.Client has no _disconnected future; ingest/mqtt.py needs aiomqtt 2.x")
    return fut


async def subscribe_forever(
    settings: MqttSettings,
    topics: list[str],
    handle: Callable[[str, bytes, float], None],
    *,
    stop: asyncio.Event,
    clock: Clock,
    on_state: Callable[[str], None] | None = None,
    reconnect_delay: float = 1.0,
    max_queued: int = 10_000,
    batch: int = 500,
    stats: SubscriberStats | None = None,
) -> None:
    """Call handle(topic, payload, received_at) for each message on `topics`, until `stop` is set.

    QoS 1/2 messages are acknowledged to the broker after `handle` returns (or raises). `max_queued`: messages
    received and waiting for the handler before reads pause (~0.5 KB each). `batch`: messages read per socket
    wake-up and handled between two yields to the event loop. Reconnects on every MqttError with a backoff from
    reconnect_delay up to 10 s. on_state gets "connecting", "connected", "disconnected" and finally "stopped".
    """
    if max_queued < 1 or batch < 1:
        raise ValueError(f"max_queued ({max_queued}) and batch ({batch}) must be at least 1: reads would never run")
    st = stats if stats is not None else SubscriberStats()
    report = on_state or (lambda _state: None)
    delay = reconnect_delay
    stopped = asyncio.ensure_future(stop.wait())
    session: asyncio.Future[None] | None = None
    try:
        while not stop.is_set():
            report("connecting")
            session = asyncio.ensure_future(
                _session(settings, topics, handle, clock, st, report, max_queued=max_queued, batch=batch)
            )
            await asyncio.wait({session, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not session.done():  # stop was set: leave cleanly (the broker keeps our session)
                session.cancel()
                await asyncio.gather(session, return_exceptions=True)
                break
            err = session.exception()
            if err is None:
                break
            if not isinstance(err, aiomqtt.MqttError):
                raise err
            if st.connected:
                delay = reconnect_delay  # we had a working connection: start the backoff again
            st.connected = False
            st.reconnects += 1
            st.last_error = str(err) or type(err).__name__
            log.warning("MQTT %s:%d: %s; reconnecting in %.1f s", settings.host, settings.port, st.last_error, delay)
            report("disconnected")
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, max(MAX_RECONNECT_DELAY_S, reconnect_delay))
    finally:
        stopped.cancel()
        if session is not None and not session.done():  # we were cancelled ourselves: take the session along
            session.cancel()
        st.connected = False
        report("stopped")


async def _session(
    settings: MqttSettings,
    topics: list[str],
    handle: Callable[[str, bytes, float], None],
    clock: Clock,
    st: SubscriberStats,
    report: Callable[[str], None],
    *,
    max_queued: int,
    batch: int,
) -> None:
    # A new client (and queue) per connection: an acknowledgement can only reach the connection its message
    # came on (packet ids are per connection), and nothing unacknowledged outlives it.
    made: list[_Inbox] = []
    client = settings.client(
        client_id=settings.client_id, clean_session=False, queue_type=_counting_queue(st, max_queued, made)
    )
    (inbox,) = made
    paho = _paho_of(client)
    paho.manual_ack_set(True)  # before connecting: the broker resends our session's backlog right away
    try:
        async with client:
            st.connected = True
            st.connects += 1
            disconnected = _disconnected_of(client)
            reader = _Reader(paho, inbox, disconnected, st, limit=max_queued, per_wakeup=batch)
            reader.start()
            # Subscribe after every connect, even with a persistent session (see the module docstring).
            granted = await client.subscribe([(t, settings.qos) for t in topics])
            refused = [t for t, code in zip(topics, granted, strict=False) if _refused(code)]
            if refused:  # e.g. an ACL: retrying with backoff, loudly, beats listening to nothing
                raise aiomqtt.MqttError(f"broker refused the subscription to {', '.join(refused)} (check its ACL)")
            report("connected")
            await _drain(inbox, reader, disconnected, paho, handle, clock, st, batch)
    finally:
        st.left_at_stop += inbox.qsize()  # unacknowledged: the broker still has the QoS 1/2 ones


class _Reader:
    """Reads the connection's socket in place of aiomqtt's reader: up to `per_wakeup` packets each time the
    socket is readable (aiomqtt's takes one per loop turn, so a batch never grew past a message or two), and
    none while `limit` messages wait in the queue (reads resume when the drain has caught up). Paused reads
    are backpressure at any QoS: TCP fills and the broker keeps the backlog. The same paho call aiomqtt's
    reader makes, on the same thread; a failure is reported the way it reports one."""

    def __init__(
        self,
        paho: paho_mqtt.Client,
        inbox: _Inbox,
        disconnected: asyncio.Future[None],
        st: SubscriberStats,
        *,
        limit: int,
        per_wakeup: int,
    ) -> None:
        sock = paho.socket()
        if sock is None:
            raise aiomqtt.MqttError("connected without a socket")
        self.loop = asyncio.get_running_loop()
        self.paho, self.inbox, self.disconnected, self.st = paho, inbox, disconnected, st
        self.limit, self.per_wakeup = limit, per_wakeup
        self.fd = sock.fileno()
        # TLS: bytes already decrypted in the SSL object wake no epoll; read on while there are some.
        self.tls_pending: Callable[[], int] | None = getattr(sock, "pending", None)
        self.paused = True

    def start(self) -> None:
        self.loop.remove_reader(self.fd)  # aiomqtt's, registered at connect; its socket-close hook removes ours
        self.resume()

    def resume(self) -> None:
        if self.paused and not self.disconnected.done() and self.paho.socket() is not None:
            self.loop.add_reader(self.fd, self._readable)
            self.paused = False
            if self._tls_buffered():  # epoll will not say so
                self.loop.call_soon(self._readable)

    def _pause(self) -> None:
        self.loop.remove_reader(self.fd)
        self.paused = True
        self.st.read_pauses += 1

    def _tls_buffered(self) -> bool:
        return self.tls_pending is not None and self.tls_pending() > 0

    def _readable(self) -> None:
        if self.paused or self.disconnected.done():
            return  # a call_soon that came after a pause or a lost connection
        inbox, paho = self.inbox, self.paho
        try:
            for _ in range(self.per_wakeup):
                if inbox.qsize() >= self.limit:
                    self._pause()
                    return
                before = inbox.qsize()
                if paho.loop_read() != paho_mqtt.MQTT_ERR_SUCCESS:
                    return  # connection lost: paho closed the socket and aiomqtt heard of it
                if inbox.qsize() == before and not self._tls_buffered():
                    return  # nothing more to read now, or a packet that was not a message: the next wake-up
            if self._tls_buffered():  # stopped at per_wakeup with bytes epoll will not announce
                self.loop.call_soon(self._readable)
        except Exception as exc:  # as aiomqtt's reader: the connection is broken
            if not self.disconnected.done():
                self.disconnected.set_exception(exc)


async def _drain(
    inbox: _Inbox,
    reader: _Reader,
    disconnected: asyncio.Future[None],
    paho: paho_mqtt.Client,
    handle: Callable[[str, bytes, float], None],
    clock: Clock,
    st: SubscriberStats,
    batch: int,
) -> None:
    """Hand the handler everything queued, `batch` at a time, acknowledging each message after it; returns
    never; raises MqttError once the connection is gone and the queue is empty."""
    disconnected.add_done_callback(inbox.wake)
    get = inbox.get_nowait
    ack = paho.ack
    while True:
        if inbox.empty():
            await inbox.wait(disconnected)
            if inbox.empty():
                raise aiomqtt.MqttError(f"connection lost: {_why(disconnected)}")
        n = min(batch, inbox.qsize())
        received_at = clock.now()  # one reading per batch: all of it was queued by now
        for _ in range(n):
            message = get()
            payload = message.payload
            if not isinstance(payload, bytes):
                payload = b"" if payload is None else str(payload).encode()
            try:
                handle(message.topic.value, payload, received_at)
            except Exception:
                st.handler_errors += 1  # acknowledged all the same: a bug would fail again on redelivery
                log.exception("MQTT message handler failed on %s", message.topic.value)
            if message.qos:
                ack(message.mid, message.qos)
                st.acked += 1
        st.received += n
        st.batches += 1
        if n > st.largest_batch:
            st.largest_batch = n
        if reader.paused and inbox.qsize() <= reader.limit // 2:
            reader.resume()
        if n == batch:
            await asyncio.sleep(0)  # more may be queued: let the dashboard, the ticker and the reader run


def _why(disconnected: asyncio.Future[None]) -> str:
    if disconnected.cancelled():
        return "cancelled"
    err = disconnected.exception()
    return (str(err) or type(err).__name__) if err is not None else "disconnected"


def _refused(code: object) -> bool:
    failure = getattr(code, "is_failure", None)
    if isinstance(failure, bool):
        return failure
    return isinstance(code, int) and code >= 0x80


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# --- publisher -------------------------------------------------------------------------------------------


@dataclass
class PublisherStats:
    queued: int = 0  # accepted by publish()
    published: int = 0  # acknowledged by the broker (QoS 1) or handed to the socket (QoS 0)
    dropped: int = 0  # refused by publish() because the queue was full
    errors: int = 0  # connection losses or failed attempts
    connected: bool = False
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class MqttPublisher:
    """Publish from synchronous code without waiting: `publish` queues, `run` sends.

    Call `publish` from the event loop's thread. Items wait in the queue across disconnects and are resent
    after a reconnect (at least once: a message in flight when the connection broke may arrive twice).
    """

    max_queued: int = 10_000
    batch: int = 100  # messages in flight at once
    client_suffix: str = "-pub"  # appended to settings.client_id: the broker must see a separate client
    reconnect_delay: float = 1.0
    stats: PublisherStats = field(default_factory=PublisherStats)
    _queue: deque[_Outgoing] = field(default_factory=deque, init=False, repr=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue one message. False (and counted in stats.dropped) when the queue is full."""
        if len(self._queue) >= self.max_queued:
            self.stats.dropped += 1
            return False
        self._queue.append(_Outgoing(topic, payload, qos, retain))
        self.stats.queued += 1
        self._wakeup.set()
        return True

    def deadletter(self, rej: Rejection) -> None:
        """Publish a rejection on the dead-letter topic; fits `Ingestor(on_reject=publisher.deadletter)`."""
        self.publish(DEADLETTER_TOPIC, deadletter_payload(rej), qos=1)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self, settings: MqttSettings, stop: asyncio.Event) -> None:
        """Send queued messages until `stop` is set; then send what is still queued if connected; return."""
        client = settings.client(client_id=settings.client_id + self.client_suffix, clean_session=True)
        client.pending_calls_threshold = self.batch + 10  # a full batch in flight is normal, not worth a warning
        delay = self.reconnect_delay
        while not stop.is_set():
            try:
                async with client:
                    self.stats.connected = True
                    delay = self.reconnect_delay
                    await self._drain(client, stop)
                    return
            except aiomqtt.MqttError as e:
                self.stats.errors += 1
                self.stats.last_error = str(e) or type(e).__name__
                log.warning("MQTT publisher: %s; %d queued; retrying in %.1f s", e, len(self._queue), delay)
            finally:
                self.stats.connected = False
            await _sleep_unless(stop, delay)
            delay = min(delay * 2, max(MAX_RECONNECT_DELAY_S, self.reconnect_delay))

    async def _drain(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        queue = self._queue
        while True:
            if not queue:
                if stop.is_set():
                    return
                self._wakeup.clear()
                await _wait_either(self._wakeup, stop)
                continue
            items = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
            results = await asyncio.gather(
                *(client.publish(i.topic, i.payload, qos=i.qos, retain=i.retain) for i in items),
                return_exceptions=True,
            )
            failed = [i for i, r in zip(items, results, strict=True) if isinstance(r, BaseException)]
            self.stats.published += len(items) - len(failed)
            if failed:
                queue.extendleft(reversed(failed))  # back to the front, in their order
                err = next(r for r in results if isinstance(r, BaseException))
                if isinstance(err, aiomqtt.MqttError):
                    raise err
                raise aiomqtt.MqttError(f"publish failed: {err!r}") from err


async def _wait_either(a: asyncio.Event, b: asyncio.Event) -> None:
    tasks = {asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def deadletter_payload(rej: Rejection) -> bytes:
    """JSON for the dead-letter topic (crowdflow/deadletter, docs/messages.md)."""
    return msgspec.json.encode(
        {
            "v": VERSION,
            "reason": rej.reason,
            "detail": rej.detail,
            "topic": rej.topic,
            "payload": rej.payload,
            "sensor": rej.sensor,
            "received_at": rej.received_at,
        }
    )
