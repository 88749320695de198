"""The MQTT edge (aiomqtt 2.x): a subscriber that survives broker restarts, and an off-path publisher.

Subscriber: a fixed client id with clean_session=False (an MQTT 3.1.1 persistent session) and QoS 1, so the
broker queues what arrives while we are away and delivers it when we come back. We subscribe again after every
(re)connect anyway: a broker that lost its state (no persistence, or a new broker) would otherwise send
nothing, silently.

aiomqtt keeps all incoming messages in one bounded queue. When that queue is full, aiomqtt drops the message
after paho has already acknowledged it to the broker, so it is lost for good with only a log line
(DESIGN.md §5). We bound the queue (`max_queued`, memory stays bounded if the consumer stalls), count every
drop in `SubscriberStats.dropped`, and keep the consumer fast: the handler is called synchronously and must
not await anything.

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

import aiomqtt
import msgspec

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
        if problems:
            raise MqttSettingsError("MQTT settings: " + "; ".join(problems))

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file or None)

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
    dropped: int = 0  # lost because aiomqtt's incoming queue was full
    handler_errors: int = 0  # the handler raised (a bug: logged with its traceback, the loop goes on)
    connects: int = 0  # successful connections, the first one included
    reconnects: int = 0  # connection losses or failed attempts followed by a retry
    last_error: str = ""
    connected: bool = False


def _counting_queue(stats: SubscriberStats) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's queue, counting the messages it refuses when full (aiomqtt itself only logs them)."""

    class CountingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            try:
                super().put_nowait(item)
            except asyncio.QueueFull:
                stats.dropped += 1
                raise

    return CountingQueue


async def subscribe_forever(
    settings: MqttSettings,
    topics: list[str],
    handle: Callable[[str, bytes, float], None],
    *,
    stop: asyncio.Event,
    clock: Clock,
    on_state: Callable[[str], None] | None = None,
    reconnect_delay: float = 1.0,
    max_queued: int = 100_000,
    stats: SubscriberStats | None = None,
) -> None:
    """Call handle(topic, payload, received_at) for each message on `topics`, until `stop` is set.

    Reconnects on every MqttError with a backoff from reconnect_delay up to 10 s. on_state gets "connecting",
    "connected", "disconnected" and finally "stopped".
    """
    st = stats if stats is not None else SubscriberStats()
    report = on_state or (lambda _state: None)
    # One client object for the whole life: aiomqtt 2.x clients are reusable, and its queue (with anything
    # already received but not yet handled) survives a reconnect.
    client = settings.client(
        client_id=settings.client_id,
        clean_session=False,
        max_queued_incoming=max_queued,
        queue_type=_counting_queue(st),
    )
    delay = reconnect_delay
    stopped = asyncio.ensure_future(stop.wait())
    session: asyncio.Future[None] | None = None
    try:
        while not stop.is_set():
            report("connecting")
            session = asyncio.ensure_future(_session(client, settings, topics, handle, clock, st, report))
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
            log.warning(
                "MQTT %s:%d: %s; reconnecting in %.1f s", settings.host, settings.port, st.last_error, delay
            )
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
    client: aiomqtt.Client,
    settings: MqttSettings,
    topics: list[str],
    handle: Callable[[str, bytes, float], None],
    clock: Clock,
    st: SubscriberStats,
    report: Callable[[str], None],
) -> None:
    async with client:
        st.connected = True
        st.connects += 1
        # Subscribe after every connect, even with a persistent session (see the module docstring).
        granted = await client.subscribe([(t, settings.qos) for t in topics])
        refused = [t for t, code in zip(topics, granted, strict=False) if _refused(code)]
        if refused:  # e.g. an ACL: retrying with backoff, loudly, beats listening to nothing
            raise aiomqtt.MqttError(
                f"broker refused the subscription to {', '.join(refused)} (check its ACL)"
            )
        report("connected")
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes):
                payload = b"" if payload is None else str(payload).encode()
            st.received += 1
            try:
                handle(message.topic.value, payload, clock.now())
            except Exception:
                st.handler_errors += 1
                log.exception("MQTT message handler failed on %s", message.topic.value)


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
        client.pending_calls_threshold = (
            self.batch + 10
        )  # a full batch in flight is normal, not worth a warning
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
