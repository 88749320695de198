"""FlowSignals: stalls and counter-flow within 60 s of onset, nothing on normal busy flow."""

from __future__ import annotations

import math

import numpy as np

from detect.flowsignals import _HEAD, FlowSignals, _add, _new_ring, _slots, _totals
from domain.levels import Level
from domain.site import Site
from domain.values import Detection, Reading

T0 = 1_798_000_000.0  # a multiple of 10 s


def reading(sensor: str, zone: str, ts: float, inflow: int, outflow: int, interval: float) -> Reading:
    return Reading(
        sensor=sensor,
        zone=zone,
        kind="flow",
        ts=ts,
        seq=0,
        interval_s=interval,
        inflow=inflow,
        outflow=outflow,
    )


def run(
    fs: FlowSignals,
    rates: dict[str, tuple[str, float, float, float, float]],
    onset: float,
    until: float,
    interval: float = 10.0,
    seed: int = 1,
) -> list[tuple[float, Detection]]:
    """Poisson flows per sensor: {sensor: (zone, in/min, out/min before onset, in/min, out/min after)}.
    Evaluates every 10 s; returns (time, detection) of every detection."""
    rng = np.random.default_rng(seed)
    found = []
    ts = T0
    while ts <= until:
        ts += 10.0
        if (ts - T0) % interval == 0:
            for sensor, (zone, i0, o0, i1, o1) in rates.items():
                after = ts - interval >= onset
                rin, rout = (i1, o1) if after else (i0, o0)
                n_in = int(rng.poisson(rin * interval / 60))
                n_out = int(rng.poisson(rout * interval / 60))
                fs.apply(reading(sensor, zone, ts, n_in, n_out, interval))
        found += [(ts, d) for d in fs.detect(ts)]
    return found


def test_stall_detected_within_a_minute(mini_site: Site) -> None:
    fs = FlowSignals(mini_site)
    fs.set_share("seg-1", 0.7)
    onset = T0 + 900.0
    # Both entrances of seg-1: 60 in / 55 out a minute each; at onset the outflow drops to 5/min.
    flows = {s: ("seg-1", 60.0, 55.0, 60.0, 5.0) for s in ("seg1-west", "seg1-east")}
    found = run(fs, flows, onset, onset + 120)
    stalls = [(ts, d) for ts, d in found if d.cause == "stall"]
    assert stalls and all(ts > onset for ts, _ in stalls)  # nothing before onset
    ts, d = stalls[0]
    assert ts - onset <= 60.0
    assert d.zone == "seg-1" and d.level is Level.III
    assert d.evidence["baseline_outflow_per_min"] > 80 and d.evidence["outflow_per_min"] < 30
    assert d.message.startswith("Promenade segment 1: outflow stalled")
    assert not any(d.cause == "counterflow" for _, d in found)


def test_stall_with_minute_counters_and_a_full_zone_is_orange(mini_site: Site) -> None:
    fs = FlowSignals(mini_site)
    fs.set_share("seg-2", 0.85)  # above the 80% orange line
    onset = T0 + 900.0
    found = run(fs, {"seg2-gate": ("seg-2", 90.0, 85.0, 100.0, 0.0)}, onset, onset + 120, interval=60.0)
    stalls = [(ts, d) for ts, d in found if d.cause == "stall"]
    assert stalls and stalls[0][0] - onset <= 60.0 and stalls[0][1].level is Level.II


def test_no_stall_in_a_quiet_zone_or_when_inflow_stops_too(mini_site: Site) -> None:
    fs = FlowSignals(mini_site)
    fs.set_share("seg-2", 0.2)  # not busy: fewer people leaving an empty promenade is not a stall
    assert not run(fs, {"seg2-gate": ("seg-2", 60.0, 55.0, 60.0, 5.0)}, T0 + 900, T0 + 1200)
    fs = FlowSignals(mini_site)
    fs.set_share("seg-2", 0.7)  # both directions drop (a counter failing, or the gate closed): not a stall
    assert not run(fs, {"seg2-gate": ("seg-2", 60.0, 55.0, 3.0, 3.0)}, T0 + 900, T0 + 1200)
    fs = FlowSignals(mini_site)
    fs.set_share("seg-2", 0.7)
    run(fs, {"seg2-gate": ("seg-2", 60.0, 55.0, 60.0, 55.0)}, T0 + 900, T0 + 900)
    assert fs.detect(T0 + 900 + 600) == []  # the counter went silent: health's business, not a stall


def test_counterflow_detected_within_a_minute(mini_site: Site) -> None:
    fs = FlowSignals(mini_site)
    fs.set_share("seg-1", 0.6)
    onset = T0 + 900.0
    # The west steps carry mostly arrivals (70 in, 10 out); at onset a wave pushes back out (70 in, 60 out).
    flows = {
        "seg1-west": ("seg-1", 70.0, 10.0, 70.0, 60.0),
        "seg1-east": ("seg-1", 20.0, 60.0, 20.0, 60.0),
    }
    found = run(fs, flows, onset, onset + 120)
    cf = [(ts, d) for ts, d in found if d.cause == "counterflow"]
    assert cf and all(ts > onset for ts, _ in cf)
    ts, d = cf[0]
    assert ts - onset <= 60.0
    assert d.level is Level.III and d.evidence["entrances"] == 1.0
    assert d.message.startswith("Promenade segment 1, west steps: counter-flow")


def test_no_counterflow_on_normal_busy_two_way_flow(mini_site: Site) -> None:
    fs = FlowSignals(mini_site)
    for z in ("seg-1", "seg-2", "plaza"):
        fs.set_share(z, 0.75)
    flows = {
        "seg1-west": ("seg-1", 80.0, 80.0, 80.0, 80.0),
        "seg1-east": ("seg-1", 60.0, 65.0, 60.0, 65.0),
        "seg2-gate": ("seg-2", 120.0, 110.0, 120.0, 110.0),
        "plaza-gate": ("plaza", 40.0, 5.0, 40.0, 5.0),
    }
    assert run(fs, flows, T0, T0 + 2 * 3600, seed=5) == []


def test_counterflow_only_at_pinch_point_kinds(mini_site: Site) -> None:
    fs = FlowSignals(mini_site, pinch_kinds=frozenset({"bridge"}))
    found = run(fs, {"seg1-west": ("seg-1", 70.0, 10.0, 70.0, 60.0)}, T0 + 900, T0 + 1100)
    assert not [d for _, d in found if d.cause == "counterflow"]


def test_ignored_readings_are_counted_and_memory_is_bounded(mini_site: Site) -> None:
    fs = FlowSignals(mini_site)
    fs.apply(Reading(sensor="plaza-cam", zone="plaza", kind="density", ts=T0, seq=0, density=1.0))
    fs.apply(reading("ghost", "seg-1", T0, 1, 1, 10))
    fs.apply(reading("seg2-gate", "seg-2", float("nan"), 1, 1, 10))
    assert fs.ignored == {"not_flow": 1, "unknown_sensor": 1, "bad_values": 1}
    for i in range(2000):
        fs.apply(reading("seg2-gate", "seg-2", T0 + 10 * i, 5, 5, 10))
    ring = fs._rings["seg2-gate"]
    assert len(ring) == _HEAD + 2 * _slots(ring) and _slots(ring) <= 80


def test_no_counterflow_after_a_dropout_of_the_counter() -> None:
    """A counter silent for 6 of the 10 baseline minutes, then back with ordinary two-way traffic: no counter-flow."""
    from domain.loader import load_site
    from domain.values import Reading

    site = load_site()
    sensor = next(s for s in site.sensors.values() if s.kind == "counter" and s.zone == "pearl-ring-bridge")
    fs = FlowSignals(site)
    fs.set_share(sensor.zone, 0.5)
    t0 = 1_798_700_000.0
    seq = 0
    for m in range(30):
        if 12 <= m < 18:
            continue  # dropout
        seq += 1
        ts = t0 + 60 * m
        fs.apply(Reading(sensor=sensor.id, zone=sensor.zone, kind="flow", ts=ts, seq=seq, interval_s=60.0,
                         inflow=80, outflow=70))  # fmt: skip
        assert not [d for d in fs.detect(ts) if d.cause == "counterflow"], f"false counter-flow at minute {m}"


class _IdRing:
    """The ring as first written (a bucket number stored per slot, lists of floats): the reference the typed
    array ring must agree with to the bit."""

    def __init__(self, keep_s: float, bucket_s: float) -> None:
        self.bucket_s = bucket_s
        self.n = max(1, math.ceil(keep_s / bucket_s)) + 1
        self.ids, self.ins, self.outs = [-1] * self.n, [0.0] * self.n, [0.0] * self.n
        self.first_ts = math.inf
        self.last_ts = -math.inf

    def add(self, ts: float, interval_s: float, inflow: float, outflow: float) -> None:
        start = ts - max(interval_s, 0.0)
        self.first_ts, self.last_ts = min(self.first_ts, start), max(self.last_ts, ts)
        b_end = math.ceil(ts / self.bucket_s) - 1
        if interval_s <= 0:
            self._put(b_end, inflow, outflow)
            return
        for b in range(max(math.floor(start / self.bucket_s), b_end - self.n + 1), b_end + 1):
            lo, hi = max(start, b * self.bucket_s), min(ts, (b + 1) * self.bucket_s)
            if hi > lo:
                f = (hi - lo) / interval_s
                self._put(b, inflow * f, outflow * f)

    def _put(self, b: int, inflow: float, outflow: float) -> None:
        slot = b % self.n
        if self.ids[slot] != b:
            if self.ids[slot] > b:
                return
            self.ids[slot], self.ins[slot], self.outs[slot] = b, 0.0, 0.0
        self.ins[slot] += inflow
        self.outs[slot] += outflow

    def totals(self, lo: float, mid: float, hi: float) -> tuple[tuple[float, float, float], ...]:
        b_lo, b_mid, b_hi = (math.floor(x / self.bucket_s) for x in (lo, mid, hi))
        a, b = [0.0, 0.0, 0], [0.0, 0.0, 0]
        for i, fin, fout in zip(self.ids, self.ins, self.outs, strict=True):
            for span, (s, e) in ((a, (b_lo, b_mid)), (b, (b_mid, b_hi))):
                if s <= i < e:
                    span[0] += fin
                    span[1] += fout
                    span[2] += 1
        return (a[0], a[1], a[2] * self.bucket_s), (b[0], b[1], b[2] * self.bucket_s)


def test_ring_agrees_with_the_per_slot_bucket_numbers_to_the_bit() -> None:
    """Random readings (late, repeated, far ahead, zero and negative intervals, odd bucket widths): whatever the
    rates read (the recent span and the baseline before it, as FlowSignals.rates asks) is the same sum, to the
    bit, as the ring that stored a bucket number per slot."""
    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(400):
        bucket_s = float(rng.choice([10.0, 7.0, 0.1, 3.3]))
        recent_s = float(rng.choice([6, 1, 2.5])) * bucket_s
        baseline_s = recent_s * float(rng.choice([1, 10, 4.3]))
        keep_s = baseline_s + recent_s + bucket_s
        ref, ring = _IdRing(keep_s, bucket_s), _new_ring(keep_s, bucket_s)
        t = 1.8e9 + float(rng.random()) * 1000
        for _ in range(int(rng.integers(1, 60))):
            ts = t + float(rng.choice([0, 1, 10, 60, 60, 300, 1000, -30, -120, -900])) + float(rng.random())
            t = max(t, ts)
            interval = float(rng.choice([60.0, 30.0, 0.0, -5.0, 1.0, 5.5, 900.0]))
            fin, fout = float(rng.integers(0, 50)), float(rng.integers(0, 50))
            ref.add(ts, interval, fin, fout)
            _add(ring, bucket_s, ts, interval, fin, fout)
            end = math.ceil(ref.last_ts / bucket_s) * bucket_s
            mid = end - recent_s
            lo = max(mid - baseline_s, math.floor(ref.first_ts / bucket_s) * bucket_s)
            assert _totals(ring, bucket_s, lo, mid, end) == ref.totals(lo, mid, end)
            compared += 1
    assert compared > 5000
