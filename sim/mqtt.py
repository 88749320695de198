"""Publishing simulated messages over MQTT with paho (its own network thread), paced by a simulated clock.

`speed` = simulated seconds per real second (60: an hour in a minute); 0 = as fast as the broker acks.
At most `window` messages are unacknowledged at once (QoS 1 PUBACKs, or written to the socket at QoS 0);
beyond that the producer waits, so memory stays bounded. If the broker goes away, paho reconnects by itself
and re-sends what it holds; the producer waits when the window is full, so nothing is lost, only delayed.

Authentication and TLS (`MqttAuth`): given to the sink (run_scenario and replay_csv take `auth=` and pass it
on). A broker that refuses the credentials fails the start at once, with the reason.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from domain.messages import SIM_CLOCK_TOPIC

_ids = itertools.count(1)


# The simulator's own variable: CROWDFLOW_MQTT_* belong to the service's config, which rejects unknown keys.
PASSWORD_ENV = "CROWDFLOW_SIM_PASSWORD"


class BrokerUnavailable(ConnectionError):
    pass


@dataclass(frozen=True, kw_only=True)
class MqttAuth:
    """Who the simulator is at the broker, and how it checks the broker. Empty: anonymous, plain TCP."""

    username: str = ""
    password: str = field(default="", repr=False)  # never in a repr, a log line or an error message
    tls: bool = False
    ca_file: str = ""  # PEM CA bundle that signed the broker's certificate; empty: the system's CAs
    cert_file: str = ""  # client certificate, for a broker with require_certificate true
    key_file: str = ""

    def __post_init__(self) -> None:
        problems = []
        if self.password and not self.username:
            problems.append("a password without a username; give the username too")
        if (self.ca_file or self.cert_file) and not self.tls:
            problems.append("a CA or client certificate is set but TLS is off; add --tls")
        if bool(self.cert_file) != bool(self.key_file):
            problems.append("a client certificate needs both the certificate and its key file")
        for what, path in (("CA file", self.ca_file), ("certificate", self.cert_file), ("key", self.key_file)):
            if path and not Path(path).is_file():
                problems.append(f"{what} {path} does not exist")
        if problems:
            raise ValueError("MQTT credentials: " + "; ".join(problems))

    @classmethod
    def from_options(
        cls,
        *,
        username: str | None,
        password_file: str | None,
        tls: bool,
        ca_file: str | None,
        cert_file: str | None = None,
        key_file: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> MqttAuth:
        """From command-line options: the password from `password_file` (first line), else from the
        CROWDFLOW_SIM_PASSWORD environment variable; never from the command line, where `ps` shows it."""
        env = os.environ if env is None else env
        password = ""
        if password_file:
            try:
                password = Path(password_file).read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, IndexError) as e:
                raise ValueError(f"cannot read the MQTT password from {password_file}: {e}") from e
        elif username:
            password = env.get(PASSWORD_ENV, "")
        return cls(
            username=username or "",
            password=password,
            tls=tls or bool(ca_file),
            ca_file=ca_file or "",
            cert_file=cert_file or "",
            key_file=key_file or "",
        )


class MqttSink:
    """A connected paho client with an acknowledgement window. Thread-safe counters; one producer thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        qos: int = 1,
        window: int = 2000,
        client_id: str | None = None,
        connect_timeout_s: float = 10.0,
        auth: MqttAuth | None = None,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        self.host, self.port, self.qos, self.window = host, port, qos, window
        self.auth = auth or MqttAuth()
        self.refused = ""  # the broker's reason when it refused our CONNECT (credentials, ACL)
        self.sent = 0
        self.acked = 0
        self.connects = 0
        self.disconnects = 0
        self._cond = threading.Condition()
        self._connected = False
        cid = client_id or f"crowdflow-sim-{os.getpid()}-{next(_ids)}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
        self.client.max_inflight_messages_set(100)  # matches Mosquitto's default per-client inflight
        self.client.max_queued_messages_set(0)  # the window bounds it instead
        self.client.reconnect_delay_set(1, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        if self.auth.username:
            self.client.username_pw_set(self.auth.username, self.auth.password or None)
        if self.auth.tls:
            # Verifies the broker's certificate and its name against `host` (paho's defaults).
            self.client.tls_set(
                ca_certs=self.auth.ca_file or None,
                certfile=self.auth.cert_file or None,
                keyfile=self.auth.key_file or None,
            )
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()
        if not self.wait_connected(connect_timeout_s) or self.refused:
            self.close(drain_s=0)
            raise BrokerUnavailable(self._unavailable(connect_timeout_s))

    def _unavailable(self, timeout_s: float) -> str:
        where = f"{self.host}:{self.port}"
        who = f"user '{self.auth.username}'" if self.auth.username else "an anonymous client"
        if self.refused:
            return (
                f"the MQTT broker at {where} refused {who}: {self.refused}; check the username and the "
                f"password (--password-file or {PASSWORD_ENV}) and the broker's ACL"
            )
        tls = (
            " or the TLS handshake failed (is this the broker's TLS port, and does --ca-file hold the CA that "
            "signed its certificate, for this host name?)"
            if self.auth.tls
            else ""
        )
        return (
            f"no MQTT broker answered at {where} within {timeout_s:.0f}s{tls}; "
            "start one (e.g. `mosquitto -p 1883`) or pass the right --host/--port"
        )

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            if not rc.is_failure:
                self._connected = True
                self.connects += 1
                self.refused = ""
            else:
                self.refused = str(rc)  # e.g. "Not authorized"; paho would retry it forever
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            self._connected = False
            self.disconnects += 1

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def pending(self) -> int:
        return self.sent - self.acked

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected; False on timeout or when the broker refused us (see `refused`)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._connected or bool(self.refused), timeout_s) and self._connected

    def publish(self, topic: str, payload: bytes, stop: threading.Event | None = None) -> bool:
        """Queue one message, first waiting while the window is full. False if `stop` was set meanwhile."""
        with self._cond:
            while self.sent - self.acked >= self.window:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.2)
        info = self.client.publish(topic, payload, qos=self.qos)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # cannot happen with an unlimited queue; never drop silently
            raise RuntimeError(f"paho refused to queue a message to {topic}")
        with self._cond:
            self.sent += 1
        return True

    def drain(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Wait until every message is acknowledged; False on timeout or stop."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.acked < self.sent:
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def close(self, drain_s: float = 30.0) -> None:
        if drain_s > 0:
            self.drain(drain_s)
        self.client.disconnect()
        self.client.loop_stop()


class Progress:
    """One status line on stderr, rewritten at most once per second of wall time."""

    def __init__(self, enabled: bool, now: Callable[[], float] = time.monotonic, out: TextIO | None = None):
        self.enabled = enabled
        self.now = now
        self.out = out or sys.stderr
        self.t0 = now()
        self.last = -1.0
        self.shown = False

    def update(self, text: Callable[[], str], force: bool = False) -> None:
        if not self.enabled:
            return
        t = self.now()
        if force or t - self.last >= 1.0:
            self.last = t
            self.out.write("\r" + text() + "\033[K")
            self.out.flush()
            self.shown = True

    def done(self) -> None:
        if self.enabled and self.shown:
            self.out.write("\n")
            self.out.flush()


class Pacer:
    """Maps simulated time onto wall time at `speed` simulated seconds per real second (0: no pacing)."""

    def __init__(
        self,
        speed: float,
        sim_start: float,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        self.speed, self.sim_start, self.now, self.sleep = speed, sim_start, now, sleep
        self.real_start = now()

    def wait_until(self, sim_ts: float, stop: threading.Event | None = None) -> bool:
        """Sleep until sim_ts is due; False if `stop` was set meanwhile."""
        if self.speed == 0:
            return not (stop is not None and stop.is_set())
        due = self.real_start + (sim_ts - self.sim_start) / self.speed
        while True:
            if stop is not None and stop.is_set():
                return False
            left = due - self.now()
            if left <= 0:
                return True
            self.sleep(min(left, 0.2))


class SimClockTicker:
    """Publishes the simulated time on SIM_CLOCK_TOPIC once per simulated instant, before its messages,
    so a service running with clock = "sim" checks and grades on the simulation's time."""

    def __init__(self, sink: MqttSink, speed: float) -> None:
        self.sink = sink
        self.speed = speed
        self.last: float | None = None
        self.sent = 0

    def tick(self, sim_ts: float, stop: threading.Event | None) -> bool:
        if self.last is not None and sim_ts <= self.last:
            return True
        self.last = sim_ts
        self.sent += 1
        payload = msgspec.json.encode({"epoch": sim_ts, "speed": self.speed})
        return self.sink.publish(SIM_CLOCK_TOPIC, payload, stop)
