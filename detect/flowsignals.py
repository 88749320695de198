"""Fast local signals at pinch points, within a minute of event time: stalls and counter-flow.

Each counter's flows land in a ring of `bucket_s` event-time buckets (spread over the interval they cover, as
in detect.rates), kept for `baseline_s + recent_s`. Both signals compare the last `recent_s` (60 s) of a
sensor's own data with the `baseline_s` (10 min) before it, so a busy entrance is judged against itself:

* stall (per zone): the zone's outflow over the last minute is below `stall_out_ratio` (30%) of its recent
  level while its inflow is still at least `stall_in_ratio` (80%) of normal, and the zone is busy (share
  ≥ `busy_share`) with at least `min_baseline_per_min` (30) both ways at baseline — below that, chance
  alone over one minute mimics a collapse (seen on quiet residential areas of a holiday run). Measured
  over a whole minute, so the collapse has lasted ≥ 60 s when it shows. People still coming in but not
  getting out is a blocked exit or a crowd that has stopped moving.
* counter-flow (per entrance, zones of pinch-point kinds): strong flows both ways at once — the weaker
  direction is at least `counter_ratio` of the stronger, at least `counter_min_per_min`, and at least
  `counter_factor` × its own recent level. Steady two-way traffic (in ≈ out at the usual volume) is normal
  and does not qualify; a wave pushing against the stream does.

Sensors silent for 3 of their intervals are left out (a dead counter is detect.health's business, not a
stall), and a sensor needs half a baseline of history before it is judged.

>>> from domain.loader import load_site
>>> from domain.values import Reading
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> fs = FlowSignals(site)
>>> t = 1e9
>>> for i in range(12):  # seg-2's gate: 80 in and 80 out a minute, then the outflow stops
...     fs.apply(Reading(sensor="seg2-gate", zone="seg-2", kind="flow", ts=t + 60 * i, seq=i, interval_s=60,
...                      inflow=80, outflow=80 if i < 11 else 5))
>>> fs.set_share("seg-2", 0.7)
>>> [d.cause for d in fs.detect(t + 660)]
['stall']
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import Any, NamedTuple

import numpy as np

from domain.levels import Level
from domain.site import Site, ZoneKind
from domain.values import Detection, Reading, ZoneState

PINCH_KINDS: frozenset[ZoneKind] = frozenset({"bridge", "metro_exit", "riverside_segment", "plaza"})
_SILENT_INTERVALS = 3.0


# One counter's ring: in/out counts per event-time bucket in typed float64 (8 bytes a number), a small header
# and then (in, out) per slot, rather than objects per value: about 1.1 KB a counter at the default 10 s
# buckets over 11 minutes. FlowSignals keeps every counter's ring in one array, one row each at `base`
# (allocated with the site: no object, dict entry or allocation per counter); a ring on its own (`_new_ring`)
# is a row at base 0. Bucket b lives in slot b % n and the ring holds the buckets (newest - n, newest]. A slot
# no bucket of that window has written to holds NaN as its inflow: no data, which is not zero flow. Slots are
# emptied as the newest bucket moves past them, so no bucket number is stored per slot: it follows from the
# slot and the newest bucket. Writes to buckets older than the window are dropped (every read is of buckets
# within it). Which bucket a reading's counts end in: detect.rates.last_bucket's rule, inline.
_FIRST, _LAST, _INTERVAL, _NEWEST = 0, 1, 2, 3  # start of the oldest data, end of the newest, the sensor's
_HEAD = 4  # last reporting interval, the newest bucket written (whole, far below 2**53: exact as a float)
_BLANKS: dict[int, array[float]] = {}  # k -> k empty slots, copied in when the window moves
_EXACT_TS = 2.0**52  # below this, whole-number bucket bounds (b * bucket_s) are exact floats


def _ring_slots(keep_s: float, bucket_s: float) -> int:
    return max(1, math.ceil(keep_s / bucket_s)) + 1


def _empty_ring(n: int) -> array[float]:
    return array("d", [math.nan, math.nan, 60.0, -math.inf]) + _blank(n)


def _new_ring(keep_s: float, bucket_s: float) -> array[float]:
    return _empty_ring(_ring_slots(keep_s, bucket_s))


def _blank(k: int) -> array[float]:
    """k empty slots, (NaN, 0.0) each: one shared array per k (at most a ring's slots), only ever copied."""
    blank = _BLANKS.get(k)
    if blank is None:
        blank = _BLANKS[k] = array("d", [math.nan, 0.0]) * k
    return blank


def _slots(ring: array[float]) -> int:
    return (len(ring) - _HEAD) >> 1


def _add(
    ring: array[float],
    bucket_s: float,
    ts: float,
    interval_s: float,
    inflow: float,
    outflow: float,
    base: int = 0,
    n: int = 0,
) -> None:
    """Counts for the interval (ts - interval_s, ts], spread evenly over the buckets it covers, into the ring of
    n slots at `base` (n 0: the whole array is one ring)."""
    start = ts - (interval_s if interval_s > 0.0 else 0.0)
    if not n:
        n = (len(ring) - _HEAD) >> 1
    if interval_s > 0:
        ring[base + _INTERVAL] = interval_s
    if not ring[base + _FIRST] <= start:  # NaN (nothing yet) or later than start
        ring[base + _FIRST] = start
    if not ring[base + _LAST] >= ts:
        ring[base + _LAST] = ts
    b_end = math.ceil(ts / bucket_s) - 1  # the bucket holding the instant just before ts (last_bucket)
    newest = ring[base + _NEWEST]
    if b_end > newest:
        _advance(ring, base, n, newest, b_end)
        newest = b_end
    oldest = int(newest) - n + 1  # the oldest bucket the window holds
    slots = base + _HEAD
    if interval_s <= 0:
        if b_end >= oldest:
            i = slots + 2 * (b_end % n)
            if ring[i] != ring[i]:  # NaN: the slot's first data
                ring[i] = 0.0
            ring[i] += inflow
            ring[i + 1] += outflow
        return
    b = math.floor(start / bucket_s)
    if b < oldest:
        b = oldest
    # Bucket bounds that are whole numbers below 2**52 are exact, so a bucket the interval covers whole has
    # hi - lo == bucket_s exactly and its share is the same float each time: computed once.
    whole = bucket_s.is_integer() and -_EXACT_TS < ts < _EXACT_TS
    f = bucket_s / interval_s
    win, wout = inflow * f, outflow * f
    while b <= b_end:  # per bucket the same arithmetic as max(start, lo), min(ts, hi), without the calls
        lo = b * bucket_s
        hi = (b + 1) * bucket_s
        if whole and lo >= start and hi <= ts:
            fin, fout = win, wout
        else:
            if lo < start:
                lo = start
            if hi > ts:
                hi = ts
            if not hi > lo:
                b += 1
                continue
            f = (hi - lo) / interval_s
            fin, fout = inflow * f, outflow * f
        i = slots + 2 * (b % n)
        v = ring[i]
        ring[i] = (v if v == v else 0.0) + fin  # NaN: the slot's first data
        ring[i + 1] += fout
        b += 1


def _advance(ring: array[float], base: int, n: int, newest: float, b_end: int) -> None:
    """The window moves to end at b_end: empty the slots of buckets newest+1 .. b_end (each held a bucket
    that has now left the window)."""
    k = n if newest == -math.inf or b_end - newest >= n else b_end - int(newest)
    s0 = (b_end - k + 1) % n
    first = k if k <= n - s0 else n - s0
    slots = base + _HEAD
    ring[slots + 2 * s0 : slots + 2 * (s0 + first)] = _blank(first)
    if k > first:  # wrapped round to slot 0
        ring[slots : slots + 2 * (k - first)] = _blank(k - first)
    ring[base + _NEWEST] = b_end


def _totals(
    ring: array[float], bucket_s: float, lo: float, mid: float, hi: float, base: int = 0, n: int = 0
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """People in and out in buckets within [lo, mid) and within [mid, hi) (bucket-aligned bounds), and the
    seconds of each span the sensor actually covered: a dropout is unknown, not zero flow. One pass for both
    spans, each summed in slot order. The ring of n slots at `base` (n 0: the whole array)."""
    b_lo, b_mid, b_hi = (math.floor(x / bucket_s) for x in (lo, mid, hi))
    ain = aout = bin_ = bout = 0.0
    acov = bcov = 0
    if ring[base + _NEWEST] == -math.inf:
        return (ain, aout, 0.0), (bin_, bout, 0.0)
    newest = int(ring[base + _NEWEST])
    if not n:
        n = (len(ring) - _HEAD) >> 1
    slots = base + _HEAD
    for slot in range(n):
        i = slots + 2 * slot
        fin = ring[i]
        if fin != fin:
            continue  # no data
        b = newest - (newest - slot) % n  # the bucket this slot holds
        if b_lo <= b < b_mid:
            ain += fin
            aout += ring[i + 1]
            acov += 1
        elif b_mid <= b < b_hi:
            bin_ += fin
            bout += ring[i + 1]
            bcov += 1
    return (ain, aout, acov * bucket_s), (bin_, bout, bcov * bucket_s)


class Rates(NamedTuple):
    """Per-minute rates of one sensor (or a zone's sum): the last `recent_s`, and the baseline before it."""

    inflow: float
    outflow: float
    base_in: float
    base_out: float


class FlowSignals:
    """Stall and counter-flow detection from flow readings; state keyed by sensor and zone."""

    def __init__(
        self,
        site: Site,
        *,
        bucket_s: float = 10.0,
        recent_s: float = 60.0,
        baseline_s: float = 600.0,
        stall_out_ratio: float = 0.3,
        stall_in_ratio: float = 0.8,
        busy_share: float = 0.5,
        min_baseline_per_min: float = 30.0,
        counter_ratio: float = 0.5,
        counter_factor: float = 2.0,
        counter_min_per_min: float = 20.0,
        pinch_kinds: frozenset[ZoneKind] = PINCH_KINDS,
    ) -> None:
        if not (bucket_s > 0 and recent_s >= bucket_s and baseline_s >= recent_s):
            raise ValueError("need 0 < bucket_s <= recent_s <= baseline_s")
        self.site = site
        self.bucket_s = bucket_s
        self.recent_s = recent_s
        self.baseline_s = baseline_s
        self.stall_out_ratio = stall_out_ratio
        self.stall_in_ratio = stall_in_ratio
        self.busy_share = busy_share
        self.min_baseline_per_min = min_baseline_per_min
        self.counter_ratio = counter_ratio
        self.counter_factor = counter_factor
        self.counter_min_per_min = counter_min_per_min
        self.pinch_kinds = pinch_kinds
        self.ignored: Counter[str] = Counter()  # reason -> readings not used
        self._share: dict[str, float] = {}
        # Every counter's ring, one row each in one array, allocated here (rows of other sensors that send
        # flows, which no real one does, are added at their first reading). Row of the sensor at site index i:
        # _row[i] (-1: none); a row is _stride numbers.
        self._n = _ring_slots(baseline_s + recent_s + bucket_s, bucket_s)
        self._stride = _HEAD + 2 * self._n
        self._index = site.index
        self._zone_of: list[str] = [s.zone for s in site.sensors.values()]
        counters = [i for i, s in enumerate(site.sensors.values()) if s.kind == "counter"]
        self._row = array("i", [-1]) * len(site.sensors)
        for row, i in enumerate(counters):
            self._row[i] = row
        self._buf = _empty_ring(self._n) * len(counters)
        # Each zone's counters as the tick reads them: (row, sensor id, entrance), built once.
        self._counters_of: dict[str, list[tuple[int, str, str]]] = {
            zid: [(self._row[site.index[s.id]], s.id, s.entrance or s.id) for s in site.sensors_of(zid)
                  if s.kind == "counter"]
            for zid in site.zones
        }  # fmt: skip

    # ---- input ----------------------------------------------------------------------------------

    def apply(self, r: Reading) -> None:
        """Take one reading; only flow readings of known counters are used, the rest counted in `ignored`."""
        if r.kind != "flow":
            self.ignored["not_flow"] += 1
            return
        i = self._index.get(r.sensor)
        if i is None or self._zone_of[i] != r.zone:
            self.ignored["unknown_sensor"] += 1
            return
        if not math.isfinite(r.ts) or not math.isfinite(r.interval_s) or r.inflow < 0 or r.outflow < 0:
            self.ignored["bad_values"] += 1
            return
        row = self._row[i]
        if row < 0:
            row = self._add_row(i)
        _add(
            self._buf, self.bucket_s, r.ts, r.interval_s, float(r.inflow), float(r.outflow), row * self._stride, self._n
        )

    def _add_row(self, i: int) -> int:
        row = len(self._buf) // self._stride
        self._buf.extend(_empty_ring(self._n))
        self._row[i] = row
        return row

    @property
    def _rings(self) -> dict[str, array[float]]:
        """Sensor id -> a copy of its ring, for the sensors that have one (tests, debugging)."""
        out = {}
        for sid, i in self._index.items():
            row = self._row[i]
            if row >= 0:
                out[sid] = self._buf[row * self._stride : (row + 1) * self._stride]
        return out

    def observe_zone(self, state: ZoneState) -> None:
        """The tracker's state of a zone, for its share of capacity (stalls only matter in a busy zone)."""
        if state.healthy:
            self.set_share(state.zone, state.share)

    def set_share(self, zone_id: str, share: float) -> None:
        self._share[zone_id] = share

    # ---- evaluation -----------------------------------------------------------------------------

    def rates(self, sensor_id: str, now: float) -> Rates | None:
        """A sensor's rates, or None if it is silent or has too little history to judge."""
        i = self._index.get(sensor_id)
        row = -1 if i is None else self._row[i]
        if row < 0:
            return None
        return self._row_rates(row, now)

    def _row_rates(self, row: int, now: float) -> Rates | None:
        ring, base = self._buf, row * self._stride
        first_ts, last_ts, interval_s = ring[base + _FIRST], ring[base + _LAST], ring[base + _INTERVAL]
        if first_ts != first_ts:  # NaN: never written
            return None
        if now - last_ts > _SILENT_INTERVALS * interval_s:
            return None
        end = math.ceil(last_ts / self.bucket_s) * self.bucket_s
        mid = end - self.recent_s
        lo = max(mid - self.baseline_s, math.floor(first_ts / self.bucket_s) * self.bucket_s)
        if mid - lo < self.baseline_s / 2:
            return None
        (bin_, bout, bcov), (rin, rout, rcov) = _totals(ring, self.bucket_s, lo, mid, end, base, self._n)
        # Rates over the time the sensor reported: after a dropout or a reboot, a baseline spread over the
        # silent minutes would make ordinary flow look like a surge (seen as false counter-flow).
        if bcov < self.baseline_s / 2 or rcov < self.recent_s / 2:
            return None
        k, kb = 60.0 / rcov, 60.0 / bcov
        return Rates(rin * k, rout * k, bin_ * kb, bout * kb)

    def all_rates(self, now: float, block: int = 1024) -> list[Rates | None]:
        """rates() of every ring, by row, to the bit: the same float operations on whole columns (numpy), each
        sum still taken in slot order (a running sum, not numpy's pairwise one). At 50,000 sensors a tick's
        loop over every counter's slots took half a second; this takes a few hundredths. `block` rows at a
        time, so the temporaries stay small."""
        stride, n, bs = self._stride, self._n, self.bucket_s
        rows = len(self._buf) // stride
        out: list[Rates | None] = [None] * rows
        if not rows:
            return out
        view = np.frombuffer(self._buf, dtype=np.float64).reshape(rows, stride)
        slot = np.arange(n, dtype=np.int64)
        try:
            with np.errstate(invalid="ignore", divide="ignore"):
                for r0 in range(0, rows, block):
                    self._block_rates(view[r0 : r0 + block], r0, now, slot, bs, n, out)
        finally:
            del view  # the array's buffer is exported while a view exists: it could not grow
        return out

    def _block_rates(
        self,
        blk: np.ndarray[Any, np.dtype[np.float64]],
        r0: int,
        now: float,
        slot: np.ndarray[Any, np.dtype[np.int64]],
        bs: float,
        n: int,
        out: list[Rates | None],
    ) -> None:
        first, last, interval, newest = blk[:, _FIRST], blk[:, _LAST], blk[:, _INTERVAL], blk[:, _NEWEST]
        # rates(): silent or never written -> None; the spans; too little history -> None
        ok = (first == first) & ~(now - last > _SILENT_INTERVALS * interval) & (newest != -math.inf)
        end = np.ceil(last / bs) * bs
        mid = end - self.recent_s
        lo = np.maximum(mid - self.baseline_s, np.floor(first / bs) * bs)
        ok &= ~(mid - lo < self.baseline_s / 2)
        # Bucket numbers beyond 2**52 (absurd event times) are not exact in int64 and float64 arithmetic alike:
        # those rows, if any, go the row-by-row way.
        odd = ok & ~(np.abs(newest) < _EXACT_TS)
        for j in np.flatnonzero(odd).tolist():
            out[r0 + j] = self._row_rates(r0 + j, now)
        ok &= ~odd
        if not ok.any():
            return
        # _totals(): the bucket each slot holds, and which span it falls in
        top = np.where(ok, newest, 0.0).astype(np.int64)[:, None]
        b = top - (top - slot[None, :]) % n
        b_lo, b_mid, b_hi = (np.floor(x / bs)[:, None] for x in (lo, mid, end))
        fin, fout = blk[:, _HEAD::2], blk[:, _HEAD + 1 :: 2]
        has = fin == fin
        in_a = has & (b_lo <= b) & (b < b_mid)
        in_b = has & ~in_a & (b_mid <= b) & (b < b_hi)
        base_in = np.cumsum(np.where(in_a, fin, 0.0), axis=1)[:, -1]
        base_out = np.cumsum(np.where(in_a, fout, 0.0), axis=1)[:, -1]
        rec_in = np.cumsum(np.where(in_b, fin, 0.0), axis=1)[:, -1]
        rec_out = np.cumsum(np.where(in_b, fout, 0.0), axis=1)[:, -1]
        bcov = in_a.sum(axis=1) * bs
        rcov = in_b.sum(axis=1) * bs
        ok &= ~(bcov < self.baseline_s / 2) & ~(rcov < self.recent_s / 2)
        k, kb = 60.0 / rcov, 60.0 / bcov
        rin, rout, bin_, bout = (
            (rec_in * k).tolist(),
            (rec_out * k).tolist(),
            (base_in * kb).tolist(),
            (base_out * kb).tolist(),
        )
        for j in np.flatnonzero(ok).tolist():
            out[r0 + j] = Rates(rin[j], rout[j], bin_[j], bout[j])

    def detect(self, now: float) -> list[Detection]:
        """Stall and counter-flow detections at event time `now`, at most one of each per zone."""
        out: list[Detection] = []
        all_rates = self.all_rates(now)
        for zid, zone in self.site.zones.items():
            per_sensor = [(sid, at, r) for row, sid, at in self._counters_of[zid] if (r := all_rates[row]) is not None]
            if not per_sensor:
                continue
            share = self._share.get(zid)
            stall = self._stall(zid, zone.name_en, [r for _, _, r in per_sensor], share, now)
            if stall is not None:
                out.append(stall)
            if zone.kind in self.pinch_kinds:
                cf = self._counterflow(zid, zone.name_en, per_sensor, share, now)
                if cf is not None:
                    out.append(cf)
        return out

    def _level(self, zone_id: str, share: float | None) -> Level:
        # Orange above the zone's II threshold (80% by default, the LB/T 034 line): in a crowd that dense a
        # blocked exit or a counter-flow wave turns into a crush within minutes (the 2014 Bund wave formed in
        # about ten), so it needs action now, not watching.
        orange = self.site.thresholds_for(zone_id).share_for(Level.II)
        return Level.II if share is not None and share >= orange else Level.III

    def _stall(self, zone_id: str, name: str, rates: list[Rates], share: float | None, now: float) -> Detection | None:
        if share is None or share < self.busy_share:
            return None
        rin = sum(r.inflow for r in rates)
        rout = sum(r.outflow for r in rates)
        bin_ = sum(r.base_in for r in rates)
        bout = sum(r.base_out for r in rates)
        if bout < self.min_baseline_per_min or bin_ < self.min_baseline_per_min:
            return None
        if not (rout < self.stall_out_ratio * bout and rin >= self.stall_in_ratio * bin_):
            return None
        return Detection(
            zone=zone_id,
            ts=now,
            level=self._level(zone_id, share),
            cause="stall",
            score=min(1.0, 1.0 - rout / bout),
            evidence={
                "inflow_per_min": rin,
                "outflow_per_min": rout,
                "baseline_inflow_per_min": bin_,
                "baseline_outflow_per_min": bout,
                "share": share,
            },
            message=(
                f"{name}: outflow stalled ({rout:,.0f}/min, usually {bout:,.0f}/min) "
                f"while {rin:,.0f}/min keep coming in, at {share:.0%} of capacity; "
                "check the exits for a blockage and hold arrivals"
            ),
        )

    def _counterflow(
        self,
        zone_id: str,
        name: str,
        per_sensor: list[tuple[str, str, Rates]],
        share: float | None,
        now: float,
    ) -> Detection | None:
        hits = []
        for _, entrance, r in per_sensor:
            lo, hi = min(r.inflow, r.outflow), max(r.inflow, r.outflow)
            base_lo = min(r.base_in, r.base_out)
            if hi <= 0 or lo < self.counter_min_per_min:
                continue
            if lo / hi >= self.counter_ratio and lo >= self.counter_factor * base_lo:
                hits.append((lo / hi, entrance, r))
        if not hits:
            return None
        hits.sort(key=lambda h: (h[0], h[2].inflow + h[2].outflow), reverse=True)
        ratio, entrance, r = hits[0]
        where = entrance if len(hits) == 1 else f"{entrance} and {len(hits) - 1} more"
        at = "" if share is None else f", at {share:.0%} of capacity"
        return Detection(
            zone=zone_id,
            ts=now,
            level=self._level(zone_id, share),
            cause="counterflow",
            score=min(1.0, ratio),
            evidence={
                "inflow_per_min": r.inflow,
                "outflow_per_min": r.outflow,
                "baseline_inflow_per_min": r.base_in,
                "baseline_outflow_per_min": r.base_out,
                "ratio": ratio,
                "entrances": float(len(hits)),
                **({} if share is None else {"share": share}),
            },
            message=(
                f"{name}, {where}: counter-flow, {r.inflow:,.0f}/min in and {r.outflow:,.0f}/min out at once "
                f"(usually {r.base_in:,.0f} in, {r.base_out:,.0f} out){at}; separate the directions "
                "(one-way flow, alternating gates)"
            ),
        )
