"""The live state the dashboard shows, and its fan-out to connected clients.

The service calls `update()` once per tick from the event loop that serves the app. It stores the latest
view per zone and per alert and enqueues ONE pre-encoded delta to every in-process client's bounded Feed and
to each sink (the push process's link, dashboard/relay.py, which serves the walls and phones from a process of
its own); the work per delta is one encode, whatever the number of clients. Lives in app.state (created by the
service), no globals.

Messages (see dashboard/stream.py for the transport):
- snapshot: {"type": "snapshot", "seq", "ts", "site", "zones", "district", "alerts", "emergency"}
- delta: {"type": "delta", "seq", "ts", "zones", "district", "alerts", "emergency"}: only what changed;
  district and emergency are null when unchanged, and when set they replace the page's copy whole.
- The snapshot also carries "epoch", new at every service start: a page that reconnects with
  `subscribe(resume=(epoch, seq))` gets only the deltas it missed, if the hub still holds them (the last
  `resume_window` deltas) and they fit its queue; otherwise a snapshot. A restart always means a snapshot.
- With `batch_interval_s` > 0, updates closer together than that are merged into one delta (zones and alerts
  by id, the newest district and emergency list win): a replay at 60x or a burst of API actions never sends
  a wall more than a few deltas per second. The first update after a quiet interval goes out at once.
- emergency (平急转换) is a list, empty in normal service, of the scopes in emergency mode:
  {"scope": "district" or a grid id, "scope_name_zh", "scope_name_en", "since": epoch s, "by", "reason"},
  district first. `set_emergency()` sends it as a delta with nothing else in it, so seq stays consecutive.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from dashboard.feed import RESUME_BYTES, Feed, FeedHost, Message, ResumeWindow, ping_text
from dashboard.views import (
    JSON,
    AlertRejected,
    alert_order,
    alert_view,
    district_view,
    site_view,
    zone_view,
)
from domain.clock import Clock, WallClock
from domain.site import Site
from domain.values import DistrictState, ZoneState

log = logging.getLogger(__name__)
RELAY_DOWN_GRACE_S = 5.0  # the push process not serving longer than a start takes: /healthz "degraded"

_encoder = msgspec.json.Encoder()


class Hub(FeedHost):
    """Latest zone/district/alert views, per-client feeds, and service health for /healthz."""

    def __init__(
        self,
        site: Site,
        *,
        client_queue: int = 64,
        recent_resolved: int = 50,
        stale_after_s: float = 60.0,
        clock: Clock | None = None,
        batch_interval_s: float = 0.25,
        resume_window: int | None = None,
        resume_bytes: int = RESUME_BYTES,
        max_sends_per_s: float = 4000.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """batch_interval_s: least real time between two deltas (0: every update is sent at once). The service
        passes dashboard.push_interval_s (0.05 s: a reading reaches walls within about 0.1 s, and the wall
        itself renders at most 4 times a second); the 0.25 s default suits a hub without a live path.
        resume_window, resume_bytes: deltas kept for clients that reconnect, by count and total size (deltas
        with many open alerts are large: memory stays bounded in bytes, not only in count); count
        by default as many as a client's queue holds: a longer gap could never be replayed (it would not fit
        the queue), so the page gets a snapshot instead.
        max_sends_per_s: the fan-out budget. Every delta costs one websocket send per client, so with many
        clients the interval between deltas grows to clients / max_sends_per_s (2,000 clients at the default:
        0.5 s); a few walls still get batch_interval_s. In-process clients' sends run on the ingest loop; the
        push process's (remote_clients) on its own loop, which the budget keeps from falling behind (a loop
        that cannot send every delta to every client turns each delta into a resync: a snapshot per client).
        monotonic: real time for pacing (tests)."""
        if max_sends_per_s <= 0:
            raise ValueError(f"max_sends_per_s must be positive, got {max_sends_per_s}")
        if client_queue < 1:
            raise ValueError(f"client_queue must be at least 1, got {client_queue}")
        self.site = site
        self.client_queue = client_queue
        self.recent_resolved = recent_resolved
        self.stale_after_s = stale_after_s
        self.clock: Clock = clock or WallClock()
        self.seq = 0
        self._site_view = site_view(site)
        self._zones: dict[str, JSON] = {zid: zone_view(z, None) for zid, z in site.zones.items()}
        self._district: JSON | None = None
        self._open: dict[str, JSON] = {}
        self._resolved: OrderedDict[str, JSON] = OrderedDict()  # newest last, capped at recent_resolved
        self._feeds: set[Feed] = set()
        self._status: dict[str, Any] = {}
        self._emergency: list[JSON] = []
        self.data_ts: float | None = None  # event time of the newest data seen
        self.last_update_at: float | None = None  # clock time of the last update carrying data
        self.rejected: Counter[str] = Counter()  # reason -> count, for inputs the hub could not show
        self.deltas = 0
        self.resyncs_closed = 0  # resyncs of clients that have since disconnected
        self.epoch = secrets.token_hex(6)  # a reconnecting page resumes only within the same service run
        self.batch_interval_s = batch_interval_s
        self.max_sends_per_s = max_sends_per_s
        self._monotonic = monotonic
        self._recent = ResumeWindow(client_queue if resume_window is None else resume_window, resume_bytes)
        self._pending: _Pending | None = None  # changes waiting for the next batched delta
        self._last_sent_at: float | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self.merged = 0  # updates folded into a later delta by batching
        self.resumed = 0  # reconnects served from the resume window instead of a snapshot
        # Where else each delta goes, once, as (seq, text): the push process's link (dashboard/relay.py).
        self.sinks: list[Callable[[int, str], None]] = []
        # Clients served by the push process (it reports them each second): the fan-out budget counts them,
        # and /healthz adds them to its clients and resyncs.
        self.remote_clients = 0
        self.remote_resyncs = 0

    # -- producer side ---------------------------------------------------------------------------------

    def update(
        self,
        states: list[ZoneState],
        district: DistrictState | None,
        alerts_changed: list[dict[str, Any]],
        *,
        data_ts: float | None = None,
    ) -> None:
        """Store this tick's changes and enqueue one delta to every client. Synchronous and cheap.

        states: this tick's zone states (all or only the changed ones; an unchanged view is not re-sent).
        district: the district state, or None if unchanged. alerts_changed: alerts as JSON dicts
        (alerts.encode.alert_json or flat), each at least id, zone, level, state.
        Call it on the app's event loop; from another thread use loop.call_soon_threadsafe(hub.update, ...).
        Every call sends one delta (seq + 1), even an empty one: it doubles as the page's heartbeat.
        data_ts: event time of the newest sensor reading behind this update. Only readings count as data: the
        states carry the tick time, so taking theirs would keep a stopped stream looking fresh (note_data).
        """
        if data_ts is not None:
            self.note_data(data_ts)
        zones_changed: list[JSON] = []
        for st in states:
            zone = self.site.zones.get(st.zone)
            if zone is None:
                self.reject("zone state for an unknown zone")
                continue
            try:
                view = zone_view(zone, st)
            except (ValueError, TypeError):  # e.g. a level outside 0..4
                self.reject("zone state that cannot be shown")
                continue
            if view != self._zones[zone.id]:
                self._zones[zone.id] = view
                zones_changed.append(view)
        district_out: JSON | None = None
        if district is not None:
            district_out = district_view(district)
            self._district = district_out
        alerts_out = self._store_alerts(alerts_changed)
        self._send_delta(zones_changed, district_out, alerts_out, None)

    def set_emergency(self, modes: list[dict[str, Any]]) -> bool:
        """The scopes now in emergency mode (AlertActions.emergency()), for every wall's emergency layout.

        Each mode needs scope, since, by and reason; a malformed one is counted in /healthz and left out.
        Sends one delta carrying only the new list, if it changed; returns whether it did. Call it on the
        app's event loop, like update().
        """
        views: list[JSON] = []
        for raw in modes:
            view = self._emergency_view(raw)
            if view is None:
                self.reject("emergency mode without scope, since, by and reason")
            else:
                views.append(view)
        views.sort(key=lambda v: (v["scope"] != "district", v["scope"]))
        if views == self._emergency:
            return False
        self._emergency = views
        self._send_delta([], None, [], views)
        return True

    def _emergency_view(self, raw: object) -> JSON | None:
        if not isinstance(raw, Mapping):
            return None
        scope, since, by, reason = (raw.get(k) for k in ("scope", "since", "by", "reason"))
        if not (isinstance(scope, str) and scope and isinstance(by, str) and isinstance(reason, str)):
            return None
        if not isinstance(since, int | float) or isinstance(since, bool):
            return None
        grid = self.site.grids.get(scope)
        if scope == "district":
            name_zh, name_en = self.site.info.name_zh, self.site.info.name_en
        else:
            name_zh, name_en = (grid.name_zh, grid.name_en) if grid else (scope, scope)
        return {"scope": scope, "scope_name_zh": name_zh, "scope_name_en": name_en, "since": float(since),
                "by": by, "reason": reason}  # fmt: skip

    def _send_delta(
        self, zones: list[JSON], district: JSON | None, alerts: list[JSON], emergency: list[JSON] | None
    ) -> None:
        pending = self._pending or _Pending()
        pending.add(zones, district, alerts, emergency)
        self._pending = pending
        if self._flush_handle is not None:
            self.merged += 1
            return  # a flush is already scheduled and will carry these changes
        wait = self._wait_s()
        if wait <= 0:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing could flush later, so send now
            self.flush()
            return
        self.merged += 1
        self._flush_handle = loop.call_later(wait, self.flush)

    def interval_s(self) -> float:
        """The least real time between two deltas now: batch_interval_s, or longer with many clients."""
        # The fan-out budget holds whatever the batching (push_interval_s 0 included) once it matters, from
        # 10 ms on; below that, batch_interval_s 0 keeps its meaning: every update at once.
        budget = (len(self._feeds) + self.remote_clients) / self.max_sends_per_s
        return max(self.batch_interval_s, budget) if budget >= 0.01 else self.batch_interval_s

    def _wait_s(self) -> float:
        interval = self.interval_s()
        if interval <= 0 or self._last_sent_at is None:
            return 0.0
        return self._last_sent_at + interval - self._monotonic()

    def flush(self) -> None:
        """Send the pending changes as one delta now (the batching timer calls this; so may a test)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.seq += 1
        self.deltas += 1
        self._last_sent_at = self._monotonic()
        msg = {
            "type": "delta",
            "seq": self.seq,
            "ts": self.data_ts,
            "zones": list(pending.zones.values()),
            "district": pending.district,
            "alerts": list(pending.alerts.values()),
            "emergency": pending.emergency,
        }
        text = _encoder.encode(msg).decode()  # once, whatever the number of clients and sinks
        message = Message(self.seq, "delta", text=text, body=msg)
        self._recent.add(Message(self.seq, "delta", text=text))  # the text only: the window is bounded by it
        for feed in self._feeds:
            feed.push(message)
        for sink in self.sinks:
            sink(self.seq, text)

    @property
    def resume_bytes(self) -> int:
        """The resume window's bound in characters (the push process keeps its own window to the same)."""
        return self._recent.max_bytes

    def set_status(self, key: str, value: object) -> None:
        """Service health shown by /healthz, e.g. set_status("broker", "connected"), ("ingest", {...})."""
        try:
            self._status[key] = msgspec.to_builtins(value)
        except TypeError:
            self._status[key] = str(value)  # never let a health value break /healthz

    def _store_alerts(self, alerts: list[dict[str, Any]]) -> list[JSON]:
        out: list[JSON] = []
        for raw in alerts:
            if not isinstance(raw, Mapping):
                self.reject("alert that is not a JSON object")
                continue
            try:
                view = alert_view(raw, self.site)
            except AlertRejected as e:
                self.reject(str(e))
                continue
            aid = view["id"]
            if self._open.get(aid) == view or self._resolved.get(aid) == view:
                continue
            if view["open"]:
                self._resolved.pop(aid, None)
                self._open[aid] = view
            else:
                self._open.pop(aid, None)
                self._resolved.pop(aid, None)
                self._resolved[aid] = view
                while len(self._resolved) > self.recent_resolved:
                    self._resolved.popitem(last=False)
            out.append(view)
        return out

    def note_data(self, ts: float) -> None:
        """The event time of the newest sensor reading the service has; only an advance counts as fresh data."""
        if self.data_ts is None or ts > self.data_ts:
            self.data_ts = ts
            self.last_update_at = self.clock.now()

    def reject(self, reason: str) -> None:
        if self.rejected[reason] == 0:
            log.warning("dashboard hub rejected input: %s (counted in /healthz from now on)", reason)
        self.rejected[reason] += 1

    # -- reader side -----------------------------------------------------------------------------------

    def snapshot(self) -> JSON:
        return {
            "type": "snapshot",
            "epoch": self.epoch,
            "seq": self.seq,
            "ts": self.data_ts,
            "last_data_age_s": self.last_data_age_s(),  # a wall opened on a stopped stream says stale at once
            "site": self._site_view,
            "zones": list(self._zones.values()),
            "district": self._district,
            "alerts": self.alerts("all"),
            "emergency": self._emergency,
        }

    def snapshot_text(self) -> str:
        return _encoder.encode(self.snapshot()).decode()

    async def _first_snapshot(self) -> Message:
        return Message(self.seq, "snapshot", body=self.snapshot())

    def ping_text(self) -> str:
        return ping_text(self.seq, self.clock.now(), self.last_data_age_s())

    def zones(self) -> list[JSON]:
        return list(self._zones.values())

    def zone(self, zone_id: str) -> JSON | None:
        return self._zones.get(zone_id)

    @property
    def district(self) -> JSON | None:
        return self._district

    def alerts(self, state: Literal["open", "all"] = "open") -> list[JSON]:
        """Open alerts (and, for "all", the recently resolved ones), open/most severe/newest first."""
        items = list(self._open.values())
        if state == "all":
            items.extend(self._resolved.values())
        return sorted(items, key=alert_order)

    def alert(self, alert_id: str) -> JSON | None:
        return self._open.get(alert_id) or self._resolved.get(alert_id)

    @property
    def emergency(self) -> list[JSON]:
        """The scopes in emergency mode as walls show them; empty in normal service."""
        return list(self._emergency)

    def last_data_age_s(self) -> float | None:
        if self.last_update_at is None:
            return None
        return round(max(0.0, self.clock.now() - self.last_update_at), 1)

    # -- clients ---------------------------------------------------------------------------------------

    def close_all(self) -> None:
        """At shutdown: every client's sender ends and closes its socket."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._close_feeds()

    # -- health ----------------------------------------------------------------------------------------

    def health(self) -> JSON:
        reasons: list[str] = []
        broker = self._status.get("broker")
        if broker is not None and broker not in (True, "connected"):
            reasons.append(f"broker {broker}")
        age = self.last_data_age_s()
        if age is None:
            reasons.append("no data yet")
        elif age > self.stale_after_s:
            reasons.append(f"no data for {age:.0f} s")
        relay = self._status.get("relay")
        down = relay.get("down_for_s") if isinstance(relay, dict) else None
        if isinstance(relay, dict) and isinstance(down, int | float) and down > RELAY_DOWN_GRACE_S:
            reasons.append(
                f"push process not serving for {down:.0f} s (restarts {relay.get('restarts')}, last exit "
                f"{relay.get('last_exit')}): pages stream from the main port's /ws meanwhile; see the service's log "
                'for why, or set [dashboard] push_port = "off" to run without it'
            )
        out: JSON = {k: v for k, v in self._status.items() if k != "broker"}
        out.update(  # the hub's own keys win over a status key of the same name
            status="degraded" if reasons else "ok",
            reasons=reasons,
            broker=broker,
            last_data_age_s=age,
            data_ts=self.data_ts,
            seq=self.seq,
            clients=self.clients + self.remote_clients,  # in this process and in the push process
            resyncs=self.resyncs + self.remote_resyncs,
            deltas=self.deltas,
            delta_interval_s=round(self.interval_s(), 3),  # grows with the clients (the fan-out budget)
            merged=self.merged,
            resumed=self.resumed,
            rejected=dict(self.rejected),
        )
        return out


class _Pending:
    """Changes not yet sent: the latest view per zone and per alert, the newest district and emergency."""

    __slots__ = ("alerts", "district", "emergency", "zones")

    def __init__(self) -> None:
        self.zones: dict[str, JSON] = {}
        self.alerts: dict[str, JSON] = {}
        self.district: JSON | None = None
        self.emergency: list[JSON] | None = None

    def add(self, zones: list[JSON], district: JSON | None, alerts: list[JSON], emergency: list[JSON] | None) -> None:
        for z in zones:
            self.zones[z["id"]] = z
        for a in alerts:
            self.alerts.pop(a["id"], None)  # re-insert: the delta lists alerts in the order they changed
            self.alerts[a["id"]] = a
        if district is not None:
            self.district = district
        if emergency is not None:
            self.emergency = emergency
