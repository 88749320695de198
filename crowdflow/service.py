"""The service: one asyncio loop running the MQTT subscriber, the pipeline, the off-path publisher and the
dashboard. Per message: decode + validate + apply to zone state (a few µs). Per tick (event time): grade,
alert, store, push. Storage and MQTT publishing run on their own queues so they never hold up ingest.

Between ticks, a live path pushes what the readings changed without waiting for the models: `live_s` of real
time after the first reading since the last push, the zones that had readings are recomputed (occupancy,
density, flows; the models' level, forecast and outlook stay those of the last tick) and go to the hub. A
zone whose measured share or density reaches I red, which the grader takes at once, runs a tick right away,
so a red alert does not wait for the tick either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import uvicorn

from alerts.encode import alert_json, alert_mqtt_payload
from alerts.escalation import Escalator
from alerts.journal import Journal
from alerts.manager import AlertManager
from alerts.measures import load_measures
from alerts.model import Notification
from alerts.notify.apprise_channel import AppriseChannel
from alerts.notify.base import Channel
from alerts.notify.dispatch import Dispatcher
from alerts.roster import Roster, load_roster, parse_roster
from alerts.routing import Router
from crowdflow.config import Config, ConfigError, push_port_of, push_warnings
from crowdflow.simclock import SIM_CLOCK_TOPIC, SimClock
from dashboard.app import create_app
from dashboard.auth import first_of, from_directory, operator_token
from dashboard.guard import LOOPBACK_HOSTS
from dashboard.hub import Hub
from dashboard.push_api import STATE_NAME as PUSH_STATE
from dashboard.push_api import PushRegistry, application_server_key
from dashboard.pushserver import PushSettings
from dashboard.relay import Relay
from detect.engine import DetectionEngine
from detect.grading import raw_level
from detect.overrides import Overrides
from domain.clock import Clock, WallClock
from domain.levels import Level
from domain.loader import load_site
from domain.messages import ALERT_TOPIC_PREFIX, DEADLETTER_TOPIC, SUBSCRIPTION
from domain.profile import CapacityProfile
from domain.site import Site
from domain.values import Alert, Reading, ZoneState
from ingest.mqtt import MqttPublisher, MqttSettings, SubscriberStats, deadletter_payload, subscribe_forever
from ingest.pipeline import Ingestor
from ingest.rejection import Rejection
from store.base import Store
from store.factory import open_store

log = logging.getLogger("crowdflow.service")


class Pipeline:
    """ingest → state → grade → alerts, driven by messages and ticks; no I/O of its own.

    Outputs go to the sinks given: `store`, `hub`, `publish` (topic, payload, retain), and the alert
    manager's (journal, dispatcher queue). Detection reads planned events and emergency mode from the
    manager's `overrides`.
    """

    def __init__(
        self,
        site: Site,
        *,
        clock: Clock,
        store: Store,
        hub: Hub,
        publish: Callable[[str, bytes, bool], bool],
        alerts: AlertManager,
        tick_s: float = 5.0,
        lateness_s: float = 120.0,
        store_readings: bool = True,
        refresh_s: float = 30.0,
        sensor_rate_limit: int = 200,
        on_dirty: Callable[[], None] | None = None,
    ) -> None:
        """on_dirty: called when a reading changes a zone and no live push is pending (the service schedules
        `live()` from it); None: no live path, zones reach the hub at ticks only."""
        self.site = site
        self.clock = clock
        self.store = store
        self.hub = hub
        self.publish = publish
        self.tick_s = tick_s
        self.store_readings = store_readings
        self.profile = CapacityProfile(site)
        self.ingestor = Ingestor(site, lateness_s=lateness_s, on_reject=self._on_reject, rate_limit=sensor_rate_limit)
        self.engine = DetectionEngine(site, self.profile, overrides=alerts.overrides)
        self.alerts = alerts
        alerts.on_change = self.push_alerts
        self.next_tick: float | None = None
        self.ticks = 0
        self.deadletter_dropped = 0
        self.newest_reading_ts: float | None = None  # event time: what the wall's clock and staleness follow
        self.refresh_s = refresh_s
        self._shown_at: dict[str, float] = {}  # alert id -> event time it last went to the hub
        self.on_dirty = on_dirty
        self._dirty: set[str] = set()  # zones with readings since the last push
        self._last: dict[str, ZoneState] = {}  # the last tick's state per zone: what the models said
        self._early: dict[str, float] = {}  # zone -> event time of its last early (red) tick
        self.live_pushes = 0
        self.early_ticks = 0

    # --- per message -------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, received_at: float) -> None:
        now = self.clock.now()
        readings = self.ingestor.feed(topic, payload, now)
        if readings:
            self._apply(readings, now)
        nxt = self.next_tick
        if nxt is not None and nxt - 2 * self.tick_s <= now < nxt:
            return  # the common case, per message: no tick due (maybe_tick's checks cost more than this)
        self.maybe_tick(now)

    def _apply(self, readings: list[Reading], received_at: float) -> None:
        apply = self.engine.apply
        newest = self.newest_reading_ts
        dirty = self._dirty
        was_clean = not dirty
        for r in readings:
            apply(r, received_at)
            dirty.add(r.zone)
            if newest is None or r.ts > newest:
                newest = r.ts
        self.newest_reading_ts = newest
        if was_clean and self.on_dirty is not None:
            self.on_dirty()
        if self.store_readings:
            self.store.write_readings(readings)

    def _on_reject(self, rej: Rejection) -> None:
        if not self.publish(DEADLETTER_TOPIC, deadletter_payload(rej), False):
            self.deadletter_dropped += 1

    # --- per tick ----------------------------------------------------------------------------------
    def maybe_tick(self, now: float | None = None) -> None:
        if isinstance(self.clock, SimClock) and not self.clock.started:
            return  # no simulated time yet: a tick at wall time would expire silences and acks of the replay
        now = self.clock.now() if now is None else now
        if self.next_tick is None or now < self.next_tick - 2 * self.tick_s:
            # First tick, or the simulated clock went back (a new replay of an earlier evening): start over.
            self.next_tick = (now // self.tick_s + 1) * self.tick_s
        if now >= self.next_tick:
            self.tick(now)
            self.next_tick = (now // self.tick_s + 1) * self.tick_s

    # --- between ticks ------------------------------------------------------------------------------
    def live(self, now: float | None = None) -> None:
        """Push the zones that had readings since the last push, recomputed now, with the last tick's model
        outputs; a zone whose measurement reaches I red ticks at once. Cheap: only those zones' sums."""
        if not self._dirty:
            return
        if isinstance(self.clock, SimClock) and not self.clock.started:
            return  # no simulated time yet (as maybe_tick): the next tick pushes these zones
        now = self.clock.now() if now is None else now
        zones, self._dirty = self._dirty, set()
        order = [z for z in self.site.zones if z in zones]  # site order, like the tick's states
        states = self.engine.tracker.snapshot(now, order)
        red = False
        for s in states:
            last = self._last.get(s.zone)
            # On the fresh measure, before the last tick's verdict: the tick decides, an early one costs ms.
            if s.healthy and (last is None or last.level < Level.I) and self._reaches_red(s, now):
                red = True
            if last is not None:
                _carry_models(s, last)
        if red:
            self.early_ticks += 1
            self.tick(now)  # pushes every zone, the alert included
            return
        merged = {**self._last, **{s.zone: s for s in states}}
        district = self.engine.district(now, list(merged.values()))
        self.hub.update(states, district, [], data_ts=self.newest_reading_ts)
        self.live_pushes += 1

    def _reaches_red(self, s: ZoneState, now: float) -> bool:
        last = self._early.get(s.zone)
        if last is not None and 0 <= now - last < self.tick_s:  # < 0: a replay of an earlier evening
            return False  # one early tick per zone per tick interval: a flapping measure cannot spin ticks
        t = self.engine.overrides.thresholds_for(s.zone, now)
        if raw_level(s, t, Level.NORMAL)[0] < Level.I:
            return False
        self._early[s.zone] = now
        return True

    def tick(self, now: float) -> list[Alert]:
        released = self.ingestor.expire(now)
        if released:
            self._apply(released, now)
        self._dirty.clear()  # the tick pushes every zone
        states, detections = self.engine.tick(now)
        self._last = {s.zone: s for s in states}
        changed = {a.id: a for a in self.alerts.observe(detections, states, now)}
        changed.update((a.id, a) for a in self.alerts.tick(now))
        district = self.engine.district(now, states)
        self.store.write_states(states)
        shown = [alert_json(a, self.site) for a in self._to_show(changed, now)]
        self.hub.update(states, district, shown, data_ts=self.newest_reading_ts)
        self._publish_alerts(changed.values())
        self.ticks += 1
        return list(changed.values())

    def _to_show(self, changed: dict[str, Alert], now: float) -> list[Alert]:
        """Lifecycle changes at once; other open alerts every `refresh_s` of event time, so evidence and message
        stay current on walls at the same level without every tick resending every alert (each view carries
        its measures and history; officers' phones are on mobile data). MQTT's retained state follows the
        lifecycle only."""
        out = dict(changed)
        shown_at: dict[str, float] = {}  # rebuilt from the open alerts: closed ones drop out by themselves
        for a in self.alerts.book.open_alerts():
            last = self._shown_at.get(a.id, -math.inf)
            if a.id in out or now - last >= self.refresh_s:
                out[a.id] = a
                last = now
            shown_at[a.id] = last
        self._shown_at = shown_at
        return list(out.values())

    def _publish_alerts(self, alerts: Iterable[Alert]) -> None:
        # Retained: a phone or a control-room system subscribing later gets each zone's current state at once.
        for a in alerts:
            self.publish(f"{ALERT_TOPIC_PREFIX}/{a.zone}", alert_mqtt_payload(a, self.site), True)

    def push_alerts(self, alerts: list[Alert]) -> None:
        """After a person's action (ack, resolve, silence...): walls and the MQTT state see it now."""
        self.hub.update([], None, [alert_json(a, self.site) for a in alerts])
        self._publish_alerts(alerts)

    def flush(self) -> None:
        """At shutdown or the end of a replay: release everything held for ordering, then one last tick."""
        released = self.ingestor.flush()
        if released:
            self._apply(released, self.clock.now())
        self.tick(self.clock.now())

    def status(self) -> dict[str, Any]:
        st = self.ingestor.stats
        return {
            "ticks": self.ticks,
            "live_pushes": self.live_pushes,  # zone pushes between ticks
            "early_ticks": self.early_ticks,  # ticks run at once for a zone measured at I red
            "ingest": _plain(st),
            "deadletter_dropped": self.deadletter_dropped,
            "tracker_rejected": dict(self.engine.tracker.rejected),
            "health_rejected": dict(self.engine.health.rejected),
            "alerts": self.alerts.status(),
            "store": _plain(getattr(self.store, "stats", {})),
        }

    # --- persistence -------------------------------------------------------------------------------
    def snapshot_text(self) -> str:
        """The models' state as JSON, taken on the loop (the models change with every reading); alerts live
        in the journal, written as they change."""
        return json.dumps({"engine": self.engine.to_snapshot()})

    def save(self, path: Path) -> None:
        write_snapshot(path, self.snapshot_text())

    def load(self, path: Path) -> bool:
        if not path.exists():
            return False
        try:
            data = json.loads(path.read_text())
            self.engine.from_snapshot(data["engine"])
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable state snapshot %s: %s", path, e)
            return False
        return True


_WALL_ONLY_ROSTER = """
[roster]
site = "{site}"
name = "wall only: no duty roster configured for this site"

[escalation]
steps = ["command"]

[[people]]
id = "wall"
name = "Command wall"
role = "operator"

[[duties]]
person = "wall"
shift = "always"
"""


def write_snapshot(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp name of its own: the shutdown save may run while a periodic one is still writing on its thread.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    tmp = Path(name)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename, or a power cut could leave an empty file in its place
    tmp.replace(path)  # atomic: a crash mid-write never leaves a torn snapshot


def _carry_models(s: ZoneState, last: ZoneState) -> None:
    """Between ticks the models have not run: a live state keeps the last tick's level, health verdict,
    forecast and learned normal, so the wall does not flicker between a measurement and its assessment."""
    s.level = last.level
    s.healthy = s.healthy and last.healthy
    s.sensor_issues = last.sensor_issues
    s.forecast = last.forecast
    s.eta_red_min = last.eta_red_min
    s.expected_inflow_per_min = last.expected_inflow_per_min
    s.outlook = last.outlook


def _roster(cfg: Config, site: Site) -> Roster:
    """The configured roster; the shipped one for the shipped site; for another site with none configured,
    a wall-only roster (alerts on the wall and in the journal, nobody's phone), said once in the log."""
    if cfg.alerts.roster:
        return load_roster(cfg.alerts.roster, site)
    default = load_site()
    if site.info.id == default.info.id:
        return load_roster(None, site)
    log.warning(
        "no duty roster for site %r: alerts go to the wall only. Set [alerts] roster to route them to officers.",
        site.info.id,
    )
    return parse_roster(_WALL_ONLY_ROSTER.format(site=site.info.id), site, path="<wall-only roster>")


def _record_only(n: Notification) -> bool:
    """[alerts] deliver = false: the notification is in the journal; nothing leaves the machine."""
    return True


def _push_registry(cfg: Config, journal: Journal, now: Callable[[], float]) -> PushRegistry | None:
    """Officers' browser subscriptions, when Web Push is configured; kept in the journal's service state."""
    if not cfg.alerts.vapid_private_key:
        return None
    return PushRegistry(
        application_server_key(cfg.alerts.vapid_private_key),
        saved=journal.load_state(PUSH_STATE) or {},
        save=lambda state: journal.save_state(PUSH_STATE, state),
        now=now,
    )


def _channels(cfg: Config, push: PushRegistry | None) -> list[Channel]:
    channels: list[Channel] = [AppriseChannel()]
    if push is not None:
        from alerts.notify.webpush import WebPushChannel  # optional extra: pywebpush

        # Sends "webpush:<id>" channels: the registry's subscriptions, read live; a gone one is forgotten.
        channels.append(
            WebPushChannel(
                subscriptions=push.subscriptions,
                vapid_private_key=cfg.alerts.vapid_private_key,
                vapid_subject=cfg.alerts.vapid_subject,
                on_gone=push.gone,
            )
        )
    return channels


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if hasattr(obj, "__struct_fields__"):
        return {k: _plain(getattr(obj, k)) for k in obj.__struct_fields__}
    return obj


class Service:
    def __init__(self, cfg: Config, *, site: Site | None = None, quiet: bool = False) -> None:
        self.cfg = cfg
        self.quiet = quiet
        self.site = site or load_site(cfg.service.site or None)
        self.wall = WallClock()
        self.clock: Clock = SimClock(self.wall) if cfg.service.clock == "sim" else self.wall
        self.data_dir = Path(cfg.service.data_dir)
        self.store = open_store(
            cfg.influx.url or None,
            database=cfg.influx.database,
            token=cfg.influx.token or None,
            org=cfg.influx.org or None,
            bucket=cfg.influx.bucket or None,
            api=cfg.influx.api,
            embedded_path=self.data_dir / "history.sqlite",
            username=cfg.influx.username or None,
            password=cfg.influx.password or None,
            site=self.site,
            spool_max_bytes=cfg.influx.spool_max_bytes,
        )
        self.hub = Hub(
            self.site,
            batch_interval_s=cfg.dashboard.push_interval_s,
            max_sends_per_s=cfg.dashboard.max_sends_per_s,
        )
        self.publisher = MqttPublisher()
        self.subscriber_stats = SubscriberStats()  # shown in /healthz: acks, read pauses, QoS 0 drops
        roster = _roster(cfg, self.site)
        self.journal = Journal(cfg.alerts.journal or self.data_dir / "alerts.sqlite")
        self.push = _push_registry(cfg, self.journal, self.wall.now)
        # A person's browser subscriptions are extra channels on every notification addressed to them.
        self.router = Router(roster, self.site, more_channels=self.push.channels_of if self.push else None)
        self.dispatcher = Dispatcher(
            _channels(cfg, self.push),
            record=self.journal.record_attempt,
            now=self.clock.now,
            max_attempts=cfg.alerts.max_attempts,
        )
        self.alerts = AlertManager(
            self.site,
            journal=self.journal,
            router=self.router,
            escalator=Escalator(roster.policy),
            measures=load_measures(cfg.alerts.measures or None),
            overrides=Overrides(self.site),
            clock=self.clock,
            submit=self.dispatcher.submit if cfg.alerts.deliver else _record_only,
            public_url=cfg.alerts.public_url or f"http://{cfg.dashboard.host}:{cfg.dashboard.port}",
        )
        self.pipeline = Pipeline(
            self.site,
            clock=self.clock,
            store=self.store,
            hub=self.hub,
            publish=lambda t, p, r: self.publisher.publish(t, p, qos=1, retain=r),
            alerts=self.alerts,
            tick_s=cfg.service.tick_s,
            lateness_s=cfg.service.lateness_s,
            store_readings=cfg.service.store_readings,
            sensor_rate_limit=cfg.service.sensor_rate_limit,
            on_dirty=self._schedule_live if cfg.service.live_s > 0 else None,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._live_handle: asyncio.TimerHandle | None = None
        self._saved_at = time.monotonic()
        self.snapshots = 0
        self.snapshot_failures = 0
        self.mqtt = MqttSettings(
            host=cfg.mqtt.host,
            port=cfg.mqtt.port,
            username=cfg.mqtt.username,
            password=cfg.mqtt.password,
            client_id=cfg.mqtt.client_id,
            qos=cfg.mqtt.qos,
            tls=cfg.mqtt.tls,
            ca_file=cfg.mqtt.ca_file,
            cert_file=cfg.mqtt.cert_file,
            key_file=cfg.mqtt.key_file,
        )
        push_port = push_port_of(cfg.dashboard)
        self.app = create_app(
            self.hub,
            store=self.store,
            allowed_origins=cfg.dashboard.allowed_origins or None,
            allowed_hosts=cfg.dashboard.allowed_hosts or None,
            wall_tokens=cfg.dashboard.wall_tokens,
            admin_token=cfg.dashboard.admin_token or None,
            max_body_bytes=cfg.dashboard.max_body_bytes,
            actions=self.alerts,
            authenticate=first_of(
                from_directory(self.router),
                operator_token(cfg.dashboard.api_token) if cfg.dashboard.api_token else None,
            ),
            api_token=None,
            push=self.push,
            stream_port=push_port,
            stream_url=cfg.dashboard.push_url,
            # While the push process is down, /api/stream sends the pages to this port's /ws.
            stream_up=lambda: self.relay is not None and self.relay.up,
        )
        # The /ws fan-out in a process of its own (dashboard/relay.py): each delta is one frame on its link.
        self.relay: Relay | None = None
        if push_port is not None:
            self.relay = Relay(
                self.hub,
                self.app.state.access,
                PushSettings(
                    host=cfg.dashboard.host,
                    port=push_port,
                    allowed_hosts=list(cfg.dashboard.allowed_hosts),
                    allowed_origins=cfg.dashboard.allowed_origins or None,
                    site_port=cfg.dashboard.port,
                ),
            )
            self.hub.sinks.append(self.relay.send_delta)
        self.stop_event = asyncio.Event()
        self.state_path = self.data_dir / "state.json"

    def _handle(self, topic: str, payload: bytes, received_at: float) -> None:
        if topic == SIM_CLOCK_TOPIC:
            if isinstance(self.clock, SimClock):
                self.clock.feed(payload)
                self.pipeline.maybe_tick()
            return
        self.pipeline.handle(topic, payload, received_at)

    def _schedule_live(self) -> None:
        if self._loop is None or self._live_handle is not None:
            return  # not running yet (the first tick pushes everything), or a push is already due
        self._live_handle = self._loop.call_later(self.cfg.service.live_s, self._run_live)

    def _run_live(self) -> None:
        self._live_handle = None
        try:
            self.pipeline.live()
        except Exception:  # the tick still pushes every zone: a bug here must not stop ingest
            log.exception("live zone push failed; zones will update at the next tick")

    def _report(self) -> None:
        """The counters /healthz shows, refreshed each second (and once at start, so it never lacks them)."""
        status = self.pipeline.status()
        status["snapshots"] = {"written": self.snapshots, "failed": self.snapshot_failures}
        self.hub.set_status("pipeline", status)
        self.hub.set_status("subscriber", self.subscriber_stats)  # acks, read pauses (backpressure), drops
        self.hub.set_status("dispatcher", self.dispatcher.stats)  # queued, in flight, retried, dropped
        # The push process: up or down, restarts, its clients, deltas dropped on its link and the resyncs.
        self.hub.set_status("relay", self.relay.status() if self.relay is not None else {"state": "off"})

    async def _ticker(self) -> None:
        self._report()
        while not self.stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=min(1.0, self.cfg.service.tick_s))
            self.pipeline.maybe_tick()
            self._report()
            if self.cfg.service.snapshot_s > 0 and time.monotonic() - self._saved_at >= self.cfg.service.snapshot_s:
                await self._snapshot()

    async def _snapshot(self) -> None:
        """Periodic snapshot of the models, so a crash (SIGKILL, power) loses at most `snapshot_s` of learning:
        taken on the loop, written and fsynced on a thread."""
        self._saved_at = time.monotonic()
        try:
            await asyncio.to_thread(write_snapshot, self.state_path, self.pipeline.snapshot_text())
            self.snapshots += 1
        except OSError as e:
            self.snapshot_failures += 1
            log.error("could not write the state snapshot %s (%s); check the disk and data_dir", self.state_path, e)

    def warm_from_history(self, days: float = 7.0) -> int:
        """Teach the surge models from the store's history when no snapshot was there (a fresh install on
        an existing InfluxDB, or a lost state file). Wall-clock mode only: a replay has no "recent past"."""
        now = self.wall.now()
        rows: list[tuple[str, float, float]] = []
        for zone in self.site.zones:
            try:
                hist = self.store.history(zone, now - days * 86400, now, every_s=60.0)
            except Exception as e:  # history is a bonus: start cold, say why
                log.warning("no history to warm the models from (%s); starting cold", e)
                return 0
            rows += [(zone, r["ts"], r["inflow_per_min"]) for r in hist if "inflow_per_min" in r]
        rows.sort(key=lambda r: r[1])
        self._seed_arrivals(now)
        return self.pipeline.engine.warm(rows)

    def _seed_arrivals(self, now: float) -> None:
        """Today's arrivals so far from the store, so the headline keeps comparing since-midnight figures."""
        midnight = self.pipeline.profile.local_midnight(now)
        tracker = self.pipeline.engine.tracker
        for zone in self.site.zones:
            try:
                rows = self.store.history(zone, midnight, now, every_s=300.0)
            except Exception as e:  # the same store just answered; if not now, start from zero and say so
                log.warning("could not read today's arrivals for %s (%s): counting from now", zone, e)
                return
            counted = [(r["ts"], r["arrivals_today"]) for r in rows if r.get("arrivals_today") is not None]
            if counted:
                ts, arrivals = max(counted, key=lambda c: c[1])
                tracker.seed_arrivals(zone, ts, int(arrivals))

    def bind_push_port(self) -> None:
        """Bind the push port now, as uvicorn binds the main port: a taken port stops the start with a message,
        rather than a push process failing to start every 30 s while /healthz says ok."""
        if self.relay is None:
            return
        try:
            self.relay.listen()
        except OSError as e:
            host, port = self.relay.settings.host, self.relay.settings.port
            raise ConfigError(
                f"[dashboard] push_port = {port}: cannot listen on {host}:{port} ({e.strerror or e}); choose a free "
                'port, or push_port = "off" to serve the push stream from the dashboard\'s own port'
            ) from e

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.bind_push_port()
        for warning in push_warnings(self.cfg):
            log.warning("%s", warning)
        resumed = self.alerts.restore()
        if resumed:
            log.info("resumed %d open alerts from %s", resumed, self.journal.path)
        self.pipeline.push_alerts(self.alerts.book.open_alerts())
        restored = self.pipeline.load(self.state_path)
        if not restored and self.cfg.service.clock == "wall":
            learned = await asyncio.to_thread(self.warm_from_history)
            if learned:
                log.info("surge models warmed from %d stored rows", learned)
        if self.cfg.dashboard.host not in LOOPBACK_HOSTS and not self.cfg.dashboard.allowed_hosts:
            log.warning(
                "dashboard listens on %s but dashboard.allowed_hosts is empty: only loopback Host names are "
                "served, so every other request gets 400. Set allowed_hosts to the names clients use.",
                self.cfg.dashboard.host,
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop_event.set)
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=self.cfg.dashboard.host,
                port=self.cfg.dashboard.port,
                log_level="warning",
                lifespan="on",
                ws_max_size=65536,  # clients send a token and pongs; uvicorn's default is 16 MiB
                # No per-message compression: it deflates every delta once per socket on the ingest loop (35%
                # of the service's CPU with 2,000 clients, py-spy); deltas are small and phones get their zones only.
                ws_per_message_deflate=False,
            )
        )
        # Our loop's handlers stop everything in order (flush, snapshot, store close); uvicorn must not take them.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        topics = [SUBSCRIPTION, SIM_CLOCK_TOPIC]
        tasks = [
            asyncio.create_task(
                subscribe_forever(
                    self.mqtt,
                    topics,
                    self._handle,
                    stop=self.stop_event,
                    clock=self.wall,
                    on_state=lambda s: self.hub.set_status("broker", s),
                    stats=self.subscriber_stats,
                ),
                name="subscriber",
            ),
            asyncio.create_task(
                self.publisher.run(
                    MqttSettings(
                        host=self.mqtt.host,
                        port=self.mqtt.port,
                        username=self.cfg.mqtt.publisher_username or self.mqtt.username,
                        password=self.cfg.mqtt.publisher_password
                        if self.cfg.mqtt.publisher_username
                        else self.mqtt.password,
                        client_id=f"{self.mqtt.client_id}-out",
                        qos=self.mqtt.qos,
                        tls=self.mqtt.tls,
                        ca_file=self.mqtt.ca_file,
                        cert_file=self.mqtt.cert_file,
                        key_file=self.mqtt.key_file,
                    ),
                    self.stop_event,
                ),
                name="publisher",
            ),
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self.dispatcher.run(self.stop_event), name="dispatcher"),
            asyncio.create_task(server.serve(), name="dashboard"),
        ]
        if self.relay is not None:  # stops by itself when stop_event is set: closes its link, waits for it
            tasks.append(asyncio.create_task(self.relay.run(self.stop_event), name="relay"))
        if not self.quiet:
            push = f" · push stream :{self.relay.port}/ws (its own process, starting)" if self.relay is not None else ""
            print(
                f"crowdflow serving: dashboard http://{self.cfg.dashboard.host}:{self.cfg.dashboard.port}/{push} "
                f"· MQTT {self.mqtt.host}:{self.mqtt.port} · store {type(self.store).__name__}",
                flush=True,
            )
        try:
            await self.stop_event.wait()
        finally:
            self.stop_event.set()  # also when cancelled: the relay stops its push process on it
            server.should_exit = True
            self.pipeline.flush()
            self.pipeline.save(self.state_path)
            await asyncio.sleep(0.2)  # let the publisher send the last alerts
            undelivered = await self.dispatcher.drain(3.0)
            if undelivered:
                log.warning("%d notifications still undelivered at shutdown (recorded in the journal)", undelivered)
            for t in tasks:
                if t.get_name() not in ("dashboard", "relay"):
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.journal.close()
            await asyncio.to_thread(self.store.close)
