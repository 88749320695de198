"""FlowSignals: stalls and counter-flow within 60 s of onset, nothing on normal busy flow."""

from __future__ import annotations

import numpy as np

from detect.flowsignals import FlowSignals
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
    assert len(ring._ids) == ring.n <= 80


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
