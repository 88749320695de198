"""The ingest path: raw MQTT message in, validated and normalised `Reading`s out (docs/messages.md).

    ingestor = Ingestor(site, on_reject=deadletter)
    readings = ingestor.feed(topic, payload, received_at=clock.now())   # per message
    readings += ingestor.expire(clock.now())                            # on a tick
    readings += ingestor.flush()                                        # at shutdown / end of a replay

State is per (sensor, kind) stream, so the path can be partitioned by zone across processes. Time only enters
through `received_at` and `now`, so a replay is deterministic.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from datetime import datetime

from domain.messages import CountMsg, DensityMsg, Message, OccupancyMsg, StatusMsg, TotalMsg
from domain.site import Sensor, Site
from domain.values import Reading
from ingest.decoder import MAX_PAYLOAD_BYTES, Decoder
from ingest.rejection import Reason, Rejection, reject
from ingest.sequencer import Sequences
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


# The message type of each sensor's own stream (stream number = the sensor's site index): what it sends.
# Its status messages, and a counter sending the other mode's kind, are streams of their own, numbered from
# the site's sensor count on, made at their first message.
_OWN: dict[tuple[str, str], type] = {
    ("counter", "interval"): CountMsg,
    ("counter", "total"): TotalMsg,
    ("area", "interval"): OccupancyMsg,
    ("area", "total"): OccupancyMsg,
    ("density", "interval"): DensityMsg,
    ("density", "total"): DensityMsg,
}


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
        # Every sensor's own stream is allocated here, at its site index, in columns: no object, dict entry or
        # allocation per sensor when its first reading comes (a 50,000-sensor site hears from most sensors only
        # a few times in its first minutes), and a few dozen bytes a sensor in all.
        self._index = site.index
        self._sensors: list[Sensor] = list(site.sensors.values())
        n = len(self._sensors)
        self._own: list[type] = [_OWN[(s.kind, s.mode)] for s in self._sensors]
        self._reversed = bytearray(s.direction == "reversed" for s in self._sensors)  # "in" means leaving
        self._seqs: Sequences[_Item] = Sequences(lateness_s, n)
        self._extra: dict[tuple[type, int], int] = {}  # (message type, sensor) -> stream, for the other streams
        self._extra_of: list[tuple[int, type]] = []  # stream n + j -> (sensor, message type)
        # Running totals: the previous (in_total, out_total, ts) per stream; ts NaN: none yet.
        self._prev_in = array("q", [0]) * n
        self._prev_out = array("q", [0]) * n
        self._prev_ts = array("d", [math.nan]) * n
        # The flood bound's event-time window (RATE_WINDOW_S) per stream, and its count.
        self._rate_window = array("q", [-1]) * n
        self._rate_count = array("q", [0]) * n
        self._rate_older = array("q", [0]) * n  # readings of the window just before the current one
        self._holding: set[int] = set()  # streams with held messages, so expire() skips the rest

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
        typ = type(msg)
        i = self._index[msg.sensor]  # the decoder took only the site's sensors, and gave the site's id
        k = i if typ is self._own[i] else self._stream(typ, i)
        kind = _KIND_OF[typ]
        seqs = self._seqs
        held = seqs.held
        missing_before, resets_before = seqs.missing, seqs.resets
        held_before = seqs.held_count(k) if held else 0
        released: list[_Item] = []
        verdict = seqs.offer(k, msg.seq, ts, received_at, (msg, ts), released)
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
                return self._readings(k, [(msg, ts)])
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
        if self.rate_limit and self._floods(k, ts):
            if verdict == "held":
                seqs.drop(k, msg.seq)
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
        stats.missing += seqs.missing - missing_before
        stats.restarts += seqs.resets - resets_before
        if held or held_before:  # the common case, nothing held anywhere, needs none of this
            held_now = seqs.held_count(k)
            stats.held += held_now - held_before
            if held_now:
                self._holding.add(k)
            else:
                self._holding.discard(k)
        return self._readings(k, released) if released else []

    def _stream(self, typ: type, sensor: int) -> int:
        """The stream of a sensor's messages other than its own kind (status), made at the first one."""
        k = self._extra.get((typ, sensor))
        if k is None:
            k = self._extra[(typ, sensor)] = self._seqs.add()
            self._extra_of.append((sensor, typ))
            self._prev_in.append(0)
            self._prev_out.append(0)
            self._prev_ts.append(math.nan)
            self._rate_window.append(-1)
            self._rate_count.append(0)
            self._rate_older.append(0)
            assert k == len(self._prev_ts) - 1, "a per-stream column fell out of step with the sequences"
        return k

    def _sensor_of(self, k: int) -> int:
        n = len(self._sensors)
        return k if k < n else self._extra_of[k - n][0]

    def _kind_of(self, k: int) -> str:
        n = len(self._sensors)
        return _KIND_OF[self._own[k] if k < n else self._extra_of[k - n][1]]

    def _floods(self, k: int, ts: float) -> bool:
        """More than rate_limit readings within the current RATE_WINDOW_S of event time. By event time, not
        arrival: a device replaying an hour it buffered (one reading per interval) is no flood, thousands of
        readings stamped within seconds are. A straggler of the window just before the current one (a flood
        from two connections, interleaved across a window boundary) counts on that window's own count: without
        it each one passed. Older readings are not counted: a device replaying its buffer after a live reading
        sends them, at most one per reporting interval, and the sequencer bounds them."""
        window = int(ts // RATE_WINDOW_S)
        current = self._rate_window[k]
        if window > current:
            self._rate_older[k] = self._rate_count[k] if window == current + 1 else 0
            self._rate_window[k] = window
            self._rate_count[k] = count = 1
        elif window < current:
            if window < current - 1:
                return False
            self._rate_older[k] = count = self._rate_older[k] + 1
        else:
            self._rate_count[k] = count = self._rate_count[k] + 1
        return count > self.rate_limit

    def expire(self, now: float) -> list[Reading]:
        """Release messages held for a gap for more than lateness_s of processing time; call on a tick."""
        return self._release_holding(now)

    def flush(self) -> list[Reading]:
        """Release everything held, giving up on every open gap (shutdown, end of a replay)."""
        return self._release_holding(None)

    def _release_holding(self, now: float | None) -> list[Reading]:
        out: list[Reading] = []
        seqs = self._seqs
        order = sorted(self._holding, key=lambda k: (self._sensors[self._sensor_of(k)].id, self._kind_of(k)))
        for k in order:  # deterministic order
            missing_before, resets_before, held_before = seqs.missing, seqs.resets, seqs.held_count(k)
            released: list[_Item] = []
            if now is None:
                seqs.flush(k, released)
            else:
                seqs.expire(k, now, released)
            held_now = seqs.held_count(k)
            self.stats.missing += seqs.missing - missing_before
            self.stats.restarts += seqs.resets - resets_before
            self.stats.held += held_now - held_before
            if not held_now:
                self._holding.discard(k)
            out.extend(self._readings(k, released))
        return out

    def _readings(self, k: int, items: list[_Item]) -> list[Reading]:
        out = []
        i = self._sensor_of(k)
        sensor = self._sensors[i]
        for msg, ts in items:
            r = self._reading(k, sensor, self._reversed[i], msg, ts)
            if r is not None:
                out.append(r)
        self.stats.released += len(out)
        return out

    def _reading(self, k: int, sensor: Sensor, reversed_: int, msg: Message, ts: float) -> Reading | None:
        if isinstance(msg, CountMsg):
            return _flow(sensor, reversed_, msg.seq, ts, msg.interval_s, msg.in_, msg.out)
        if isinstance(msg, TotalMsg):
            return self._from_total(k, sensor, reversed_, msg, ts)
        if isinstance(msg, OccupancyMsg):
            return Reading(sensor=msg.sensor, zone=sensor.zone, kind="occupancy", ts=ts, seq=msg.seq, count=msg.count)
        if isinstance(msg, DensityMsg):
            return Reading(sensor=msg.sensor, zone=sensor.zone, kind="density", ts=ts, seq=msg.seq, density=msg.density)
        assert isinstance(msg, StatusMsg)
        return Reading(
            sensor=msg.sensor,
            zone=sensor.zone,
            kind="status",
            ts=ts,
            seq=msg.seq,
            status=msg.state,
            detail=msg.detail,
        )

    def _from_total(self, k: int, sensor: Sensor, reversed_: int, msg: TotalMsg, ts: float) -> Reading | None:
        p_in, p_out, p_ts = self._prev_in[k], self._prev_out[k], self._prev_ts[k]
        self._prev_in[k], self._prev_out[k], self._prev_ts[k] = msg.in_total, msg.out_total, ts
        if p_ts != p_ts:  # NaN: none yet
            self.stats.baselines += 1  # the first total only sets the baseline: no flow can be derived yet
            return None
        if msg.in_total < p_in or msg.out_total < p_out:
            # Counter reset (midnight or reboot): what it shows now was counted since the reset. Taking the
            # new totals as the delta never produces a negative or a giant wrapped-around flow.
            self.stats.resets += 1
            d_in, d_out = msg.in_total, msg.out_total
        else:
            d_in, d_out = msg.in_total - p_in, msg.out_total - p_out
        interval = ts - p_ts
        if interval <= 0:
            interval = sensor.interval_s
        return _flow(sensor, reversed_, msg.seq, ts, interval, d_in, d_out)

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


def _flow(sensor: Sensor, reversed_: int, seq: int, ts: float, interval_s: float, cin: int, cout: int) -> Reading:
    """A flow reading of the zone's in and out; a counter mounted the other way round counts leaving as "in"."""
    if reversed_:
        cin, cout = cout, cin
    return Reading(
        sensor=sensor.id, zone=sensor.zone, kind="flow", ts=ts, seq=seq, interval_s=interval_s, inflow=cin, outflow=cout
    )
