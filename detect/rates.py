"""Inflow and outflow rates of one zone over a sliding event-time window, in bounded memory.

Counts land in fixed-width event-time buckets held in a ring of ceil(window / bucket) slots; each slot
remembers which bucket it holds, so a stale slot is recognised and reused without any sweeping. A reading's
counts are spread over the buckets its interval covers, so a 60 s counter does not look like a 10 s spike.

>>> ring = FlowRing(window_s=300.0, bucket_s=10.0)
>>> ring.add(1000.0, 60.0, inflow=120, outflow=60)
>>> ring.rates(1000.0)  # 120 in over the 60 s seen since data began
(120.0, 60.0)
"""

from __future__ import annotations

import math
from typing import Any

_EXACT_TS = 2.0**52  # below this, whole-number bucket bounds (b * bucket_s) are exact floats


def last_bucket(ts: float, bucket_s: float) -> int:
    """The bucket that takes the counts of an interval ending at ts, or of an instant reading at ts: the one
    holding the instant just before ts, ceil(ts / bucket_s) - 1.

    Buckets are [b * bucket_s, (b + 1) * bucket_s) and a reading covers (ts - interval_s, ts]: at a boundary
    (ts = b * bucket_s) its last moment lies in bucket b - 1, and bucket b has none of it. An instant reading
    (interval_s 0) lands where a shrinking interval ending at ts would, so a zero interval is no special case.
    Both rings (FlowRing here, the counters' rings in detect.flowsignals) apply this rule inline on their hot
    paths (a call per reading costs more than the rule); tests/detect/test_rates.py pins both to it."""
    return math.ceil(ts / bucket_s) - 1


class FlowRing:
    __slots__ = ("_ids", "_in", "_out", "bucket_s", "first_ts", "n", "window_s")

    def __init__(self, window_s: float = 300.0, bucket_s: float = 10.0) -> None:
        if not (window_s > 0 and bucket_s > 0):
            raise ValueError(f"window_s and bucket_s must be positive, got {window_s}, {bucket_s}")
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.n = max(1, math.ceil(window_s / bucket_s))
        self._ids: list[int] = [-1] * self.n  # which bucket each slot holds; -1: empty
        self._in: list[float] = [0.0] * self.n
        self._out: list[float] = [0.0] * self.n
        self.first_ts: float | None = None  # start of the earliest flow seen, so early rates are not diluted

    def add(self, ts: float, interval_s: float, inflow: float, outflow: float) -> None:
        """Counts for the interval (ts - interval_s, ts]; spread evenly over the buckets it covers."""
        start = ts - max(interval_s, 0.0)
        if self.first_ts is None or start < self.first_ts:
            self.first_ts = start
        bucket_s, n = self.bucket_s, self.n
        b_end = math.ceil(ts / bucket_s) - 1  # last_bucket(ts, bucket_s), inline
        if interval_s <= 0:
            self._put(b_end, inflow, outflow)
            return
        b = max(math.floor(start / bucket_s), b_end - n + 1)  # older parts left the ring
        ids, ins, outs = self._ids, self._in, self._out
        # Bucket bounds that are whole numbers below 2**52 are exact, so a bucket the interval covers whole has
        # hi - lo == bucket_s exactly and its share is the same float each time: computed once.
        whole = bucket_s.is_integer() and -_EXACT_TS < ts < _EXACT_TS
        f = bucket_s / interval_s
        win, wout = inflow * f, outflow * f
        while b <= b_end:  # _put inlined, and max/min as comparisons: the same arithmetic, fewer calls
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
            slot = b % n
            held = ids[slot]
            if held != b:
                if held > b:
                    b += 1
                    continue  # the slot holds a newer bucket: this one is outside any window we will read
                ids[slot] = b
                ins[slot] = 0.0
                outs[slot] = 0.0
            ins[slot] += fin
            outs[slot] += fout
            b += 1

    def _put(self, b: int, inflow: float, outflow: float) -> None:
        slot = b % self.n
        held = self._ids[slot]
        if held != b:
            if held > b:
                return  # the slot already holds a newer bucket: this one is outside any window we will read
            self._ids[slot] = b
            self._in[slot] = 0.0
            self._out[slot] = 0.0
        self._in[slot] += inflow
        self._out[slot] += outflow

    def rates(self, now: float) -> tuple[float, float]:
        """(inflow, outflow) per minute over the window ending at now."""
        b_now = math.floor(now / self.bucket_s)
        oldest = b_now - self.n + 1
        span_start = oldest * self.bucket_s
        if self.first_ts is not None:
            span_start = max(span_start, self.first_ts)
        span = now - span_start
        if span <= 0:
            return 0.0, 0.0
        tin = tout = 0.0
        for slot in range(self.n):
            if oldest <= self._ids[slot] <= b_now:
                tin += self._in[slot]
                tout += self._out[slot]
        return tin / span * 60.0, tout / span * 60.0

    def to_dict(self) -> dict[str, Any]:
        return {"ids": self._ids[:], "in": self._in[:], "out": self._out[:], "first_ts": self.first_ts}

    def load(self, data: dict[str, Any]) -> None:
        ids, tin, tout = list(data["ids"]), list(data["in"]), list(data["out"])
        if not (len(ids) == len(tin) == len(tout) == self.n):
            # A different window or bucket width since the snapshot: start the rates afresh rather than guess.
            return
        self._ids = [int(x) for x in ids]
        self._in = [float(x) for x in tin]
        self._out = [float(x) for x in tout]
        ft = data.get("first_ts")
        self.first_ts = None if ft is None else float(ft)
