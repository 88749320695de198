"""The ingest path: raw MQTT message in, validated and normalised `Reading`s out (docs/messages.md).

    ingestor = Ingestor(site, on_reject=deadletter)
    readings = ingestor.feed(topic, payload, received_at=clock.now())   # per message
    readings += ingestor.expire(clock.now())                            # on a tick
    readings += ingestor.flush()                                        # at shutdown / end of a replay

State is per (sensor, kind) stream, so the path can be partitioned by zone across processes. Time only enters
through `received_at` and `now`, so a replay is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from domain.messages import CountMsg, DensityMsg, Message, OccupancyMsg, StatusMsg, TotalMsg
from domain.site import Sensor, Site
from domain.values import Reading
from ingest.decoder import MAX_PAYLOAD_BYTES, Decoder
from ingest.rejection import Reason, Rejection, reject
from ingest.sequencer import Sequencer
from ingest.stats import IngestStats

_KIND_OF: dict[type, str] = {
    CountMsg: "count",
    TotalMsg: "total",
    OccupancyMsg: "occupancy",
    DensityMsg: "density",
    StatusMsg: "status",
}

_Item = tuple[Message, float]  # the message and its event time, epoch seconds


# At most RATE_LIMIT readings of one kind from one sensor within RATE_WINDOW_S of event time (20 a second: no
# counter or camera reports that often, and load tests run sensors at 10 a second); beyond it, readings are
# rejected as too_frequent: a broken or hostile device must not drown its zone's counts, nor the service.
RATE_LIMIT = 200
RATE_WINDOW_S = 10.0


class _Stream(Sequencer[_Item]):
    """One sensor's messages of one kind: its sequencer (one object with it, not two: there is one stream per
    sensor and kind) and, for running totals, the previous total."""

    __slots__ = ("kind", "prev_total", "rate_count", "rate_window", "reversed", "sensor", "zone")

    def __init__(self, sensor: Sensor, kind: str, lateness_s: float) -> None:
        super().__init__(lateness_s)
        self.sensor = sensor
        self.zone = sensor.zone
        self.kind = kind
        self.reversed = sensor.direction == "reversed"
        self.prev_total: tuple[int, int, float] | None = None  # in_total, out_total, ts
        self.rate_window = -1  # event-time window of the flood bound (RATE_WINDOWS intervals), and its count
        self.rate_count = 0

    def floods(self, ts: float, limit: int) -> bool:
        """More than `limit` readings within the current RATE_WINDOW_S of event time. By event time, not
        arrival: a device replaying an hour it buffered (one reading per interval) is no flood, thousands of
        readings stamped within seconds are. Older windows are not counted (the sequencer bounds those)."""
        window = int(ts // RATE_WINDOW_S)
        if window > self.rate_window:
            self.rate_window, self.rate_count = window, 0
        elif window < self.rate_window:
            return False
        self.rate_count += 1
        return self.rate_count > limit

    def reading(self, item: _Item, stats: IngestStats) -> Reading | None:
        msg, ts = item
        if isinstance(msg, CountMsg):
            return self._flow(msg.seq, ts, msg.interval_s, msg.in_, msg.out)
        if isinstance(msg, TotalMsg):
            return self._from_total(msg, ts, stats)
        if isinstance(msg, OccupancyMsg):
            return Reading(sensor=msg.sensor, zone=self.zone, kind="occupancy", ts=ts, seq=msg.seq, count=msg.count)
        if isinstance(msg, DensityMsg):
            return Reading(sensor=msg.sensor, zone=self.zone, kind="density", ts=ts, seq=msg.seq, density=msg.density)
        return Reading(
            sensor=msg.sensor,
            zone=self.zone,
            kind="status",
            ts=ts,
            seq=msg.seq,
            status=msg.state,
            detail=msg.detail,
        )

    def _flow(self, seq: int, ts: float, interval_s: float, cin: int, cout: int) -> Reading:
        if self.reversed:  # mounted the other way round: its "in" is people leaving the zone
            cin, cout = cout, cin
        return Reading(
            sensor=self.sensor.id,
            zone=self.zone,
            kind="flow",
            ts=ts,
            seq=seq,
            interval_s=interval_s,
            inflow=cin,
            outflow=cout,
        )

    def _from_total(self, msg: TotalMsg, ts: float, stats: IngestStats) -> Reading | None:
        prev = self.prev_total
        self.prev_total = (msg.in_total, msg.out_total, ts)
        if prev is None:
            stats.baselines += 1  # the first total only sets the baseline: no flow can be derived yet
            return None
        p_in, p_out, p_ts = prev
        if msg.in_total < p_in or msg.out_total < p_out:
            # Counter reset (midnight or reboot): what it shows now was counted since the reset. Taking the
            # new totals as the delta never produces a negative or a giant wrapped-around flow.
            stats.resets += 1
            d_in, d_out = msg.in_total, msg.out_total
        else:
            d_in, d_out = msg.in_total - p_in, msg.out_total - p_out
        interval = ts - p_ts
        if interval <= 0:
            interval = self.sensor.interval_s
        return self._flow(msg.seq, ts, interval, d_in, d_out)


class Ingestor:
    def __init__(
        self,
        site: Site,
        *,
        lateness_s: float = 120.0,
        max_future_s: float = 300.0,
        max_age_s: float = 6 * 3600,
        on_reject: Callable[[Rejection], None] | None = None,
        max_bytes: int = MAX_PAYLOAD_BYTES,
        rate_limit: int = RATE_LIMIT,
    ) -> None:
        """rate_limit: readings per sensor and kind within RATE_WINDOW_S of event time beyond which a sensor
        is flooding (too_frequent); 0: no limit (load tests that drive a few sensors very fast)."""
        self.site = site
        self.rate_limit = rate_limit
        self.lateness_s = lateness_s
        self.max_future_s = max_future_s
        self.max_age_s = max_age_s
        self.on_reject = on_reject
        self.stats = IngestStats()
        self._decoder = Decoder(site, max_bytes=max_bytes)
        # message type -> sensor -> stream: no key tuple per stream, none built per message
        self._streams: dict[type, dict[str, _Stream]] = {typ: {} for typ in _KIND_OF}
        self._holding: set[_Stream] = set()  # streams with held messages, so expire() skips the rest

    def feed(self, topic: str, payload: bytes, received_at: float) -> list[Reading]:
        """Take one MQTT message; return the Readings released by it (usually just its own)."""
        stats = self.stats
        stats.received += 1
        msg = self._decoder.decode(topic, payload, received_at)
        if isinstance(msg, Rejection):
            self._rejected(msg)
            return []
        ts = msg.ts.timestamp()
        if not (received_at - self.max_age_s <= ts <= received_at + self.max_future_s):
            self._reject(
                "timestamp_out_of_range",
                _time_problem(msg.ts, ts, received_at),
                topic,
                payload,
                msg,
                received_at,
            )
            return []
        streams = self._streams[type(msg)]
        stream = streams.get(msg.sensor)
        if stream is None:
            stream = streams[msg.sensor] = _Stream(self.site.sensors[msg.sensor], _KIND_OF[type(msg)], self.lateness_s)
        kind = stream.kind
        missing_before, held_before = stream.missing, len(stream.held)
        released: list[_Item] = []
        verdict = stream.offer(msg.seq, ts, received_at, (msg, ts), released)
        if verdict == "duplicate":
            stats.duplicates += 1
            self._reject(
                "duplicate",
                f"seq {msg.seq} of {kind} from '{msg.sensor}' was already received; "
                "nothing to fix unless this is frequent (then check the sensor's retry logic "
                "and that seq increases by one per message)",
                topic,
                payload,
                msg,
                received_at,
            )
            return []
        if verdict == "late":
            if kind == "count":
                # Interval counts are additive: applying one late keeps occupancy right.
                stats.accepted += 1
                stats.late_applied += 1
                return self._readings(stream, [(msg, ts)])
            self._reject(
                "too_late",
                f"seq {msg.seq} arrived after its gap was closed (lateness window {self.lateness_s:g} s); "
                + (
                    "its people are already in the next total's delta"
                    if kind == "total"
                    else "a newer reading has superseded it"
                ),
                topic,
                payload,
                msg,
                received_at,
            )
            return []
        if verdict == "untracked":
            self._reject(
                "too_late",
                f"seq {msg.seq} is older than the first message seen from '{msg.sensor}' since this service "
                "started, so it cannot be told from a duplicate; it was not applied",
                topic,
                payload,
                msg,
                received_at,
            )
            return []
        if verdict == "restart":
            stats.restarts += 1
        # The flood bound after sequencing: a repeat is a duplicate, not a flood, and a rejected reading in
        # order still moves the sequence on, so the readings after a flood are not held for a gap it left. One
        # that was held (out of order, or past a seq jump) is taken out of the hold.
        if self.rate_limit and stream.floods(ts, self.rate_limit):
            if verdict == "held":
                del stream.held[msg.seq]
            released = [item for item in released if item[0] is not msg]
            self._reject(
                "too_frequent",
                f"'{msg.sensor}' sent more than {self.rate_limit} {kind} readings stamped within {RATE_WINDOW_S:g} s; "
                "fix the device's reporting rate (or its clock, if it stamps every reading alike)",
                topic,
                payload,
                msg,
                received_at,
            )
        else:
            stats.accepted += 1
        stats.missing += stream.missing - missing_before
        if stream.held or held_before:  # the common stream, in order with nothing held, needs none of this
            stats.held += len(stream.held) - held_before
            if stream.held:
                self._holding.add(stream)
            else:
                self._holding.discard(stream)
        return self._readings(stream, released) if released else []

    def expire(self, now: float) -> list[Reading]:
        """Release messages held for a gap for more than lateness_s of processing time; call on a tick."""
        return self._release_holding(now)

    def flush(self) -> list[Reading]:
        """Release everything held, giving up on every open gap (shutdown, end of a replay)."""
        return self._release_holding(None)

    def _release_holding(self, now: float | None) -> list[Reading]:
        out: list[Reading] = []
        for stream in sorted(self._holding, key=lambda s: (s.sensor.id, s.kind)):  # deterministic order
            missing_before, held_before = stream.missing, len(stream.held)
            released: list[_Item] = []
            if now is None:
                stream.flush(released)
            else:
                stream.expire(now, released)
            self.stats.missing += stream.missing - missing_before
            self.stats.held += len(stream.held) - held_before
            if not stream.held:
                self._holding.discard(stream)
            out.extend(self._readings(stream, released))
        return out

    def _readings(self, stream: _Stream, items: list[_Item]) -> list[Reading]:
        out = []
        for item in items:
            r = stream.reading(item, self.stats)
            if r is not None:
                out.append(r)
        self.stats.released += len(out)
        return out

    def _reject(
        self, reason: Reason, detail: str, topic: str, payload: bytes, msg: Message, received_at: float
    ) -> None:
        self._rejected(reject(reason, detail, topic, payload, msg.sensor, received_at))

    def _rejected(self, rej: Rejection) -> None:
        rejected = self.stats.rejected
        rejected[rej.reason] = rejected.get(rej.reason, 0) + 1
        if self.on_reject is not None:
            self.on_reject(rej)


def _time_problem(when: datetime, ts: float, received_at: float) -> str:
    delta = ts - received_at
    rel = f"{delta / 3600:.1f} h ahead of" if delta > 0 else f"{-delta / 3600:.1f} h older than"
    return (
        f"event time {when.isoformat()} is {rel} the time it was received; "
        "check the sensor's clock (NTP) and that its timestamps carry the right UTC offset "
        "(naive times are read in the site's timezone)"
    )
