"""The two bucket rings (detect.rates.FlowRing per zone, detect.flowsignals' per counter) spread a reading's
counts by one rule (detect.rates.last_bucket): they agree bucket for bucket, to the bit, boundaries included."""

from __future__ import annotations

import math
from array import array

import numpy as np
import pytest

from detect.flowsignals import _HEAD, _NEWEST, _add, _new_ring, _slots
from detect.rates import FlowRing, last_bucket


def ring_buckets(ring: FlowRing) -> dict[int, tuple[float, float]]:
    return {b: (ring._in[s], ring._out[s]) for s, b in enumerate(ring._ids) if b >= 0}


def signal_buckets(ring: array[float]) -> dict[int, tuple[float, float]]:
    newest = ring[_NEWEST]
    if newest == -math.inf:
        return {}
    n, top = _slots(ring), int(newest)
    out = {}
    for slot in range(n):
        fin = ring[_HEAD + 2 * slot]
        if fin == fin:  # not NaN: the slot has data
            out[top - (top - slot) % n] = (fin, ring[_HEAD + 2 * slot + 1])
    return out


@pytest.mark.parametrize("ts", [1000.0, 1005.0, 1000.000001, 999.999999])
@pytest.mark.parametrize("interval", [0.0, 60.0, 10.0, 5.0])
def test_both_rings_put_a_reading_where_last_bucket_says(ts: float, interval: float) -> None:
    zone, counter = FlowRing(window_s=300.0, bucket_s=10.0), _new_ring(670.0, 10.0)
    zone.add(ts, interval, 60, 30)
    _add(counter, 10.0, ts, interval, 60.0, 30.0)
    a, b = ring_buckets(zone), signal_buckets(counter)
    assert a == b
    assert max(a) == last_bucket(ts, 10.0)
    assert sum(v[0] for v in a.values()) == pytest.approx(60.0)
    if ts == 1000.0:  # on a boundary: the counts end in bucket 99, [990, 1000); bucket 100 has none of them
        assert last_bucket(ts, 10.0) == 99 and 100 not in a


def test_both_rings_agree_bucket_for_bucket_on_random_readings() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        bucket_s = float(rng.choice([10.0, 7.0, 3.3, 0.5]))
        zone, counter = FlowRing(window_s=bucket_s * 30, bucket_s=bucket_s), _new_ring(bucket_s * 29, bucket_s)
        t = 1.8e9 + float(rng.random()) * 100
        for _ in range(int(rng.integers(1, 40))):
            t += float(rng.choice([0.0, 1.0, bucket_s, 60.0, 0.25]))
            if rng.random() < 0.2:
                t = math.ceil(t / bucket_s) * bucket_s  # exactly on a boundary
            interval = float(rng.choice([0.0, 60.0, 30.0, bucket_s, 5.5]))
            fin, fout = int(rng.integers(0, 40)), int(rng.integers(0, 40))
            zone.add(t, interval, fin, fout)
            _add(counter, bucket_s, t, interval, float(fin), float(fout))
            a, b = ring_buckets(zone), signal_buckets(counter)
            newest = last_bucket(t, bucket_s)
            window = range(newest - 25, newest + 1)  # within both rings' windows
            assert {k: v for k, v in a.items() if k in window} == {k: v for k, v in b.items() if k in window}
