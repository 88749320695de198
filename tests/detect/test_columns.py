"""The detection models keep their per-sensor state in columns at the sensors' site indices, allocated with
the site: a first reading from every sensor leaves nothing behind per sensor, and the tracker's snapshot still
lists every sensor heard from (its own sensors from the column, others from the zone's dict)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import msgspec
import pytest

from detect.flowsignals import FlowSignals
from detect.health import SensorHealth
from detect.state import ZoneTracker
from domain.profile import CapacityProfile
from domain.site import Site
from domain.values import Reading

T0 = 1_798_700_000.0


def scaled(site: Site, copies: int) -> Site:
    sensors = tuple(msgspec.structs.replace(s, id=f"{s.id}-{k}") for k in range(copies) for s in site.file.sensors)
    return Site(msgspec.structs.replace(site.file, sensors=sensors), site.path)


def first_reading(site: Site, sid: str, ts: float) -> Reading:
    s = site.sensors[sid]
    if s.kind == "counter":
        return Reading(sensor=sid, zone=s.zone, kind="flow", ts=ts, seq=0, interval_s=60.0, inflow=3, outflow=1)
    if s.kind == "area":
        return Reading(sensor=sid, zone=s.zone, kind="occupancy", ts=ts, seq=0, count=40)
    return Reading(sensor=sid, zone=s.zone, kind="density", ts=ts, seq=0, density=0.5)


def grown_per_sensor(site: Site, apply: Callable[[Reading], None]) -> float:
    readings = [first_reading(site, sid, T0 + i % 50) for i, sid in enumerate(site.sensors)]
    apply(readings[0])  # whatever is made once
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for r in readings[1:]:
            apply(r)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - before) / len(readings)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("model", ["flow signals", "sensor health", "zone tracker"])
def test_a_first_reading_from_every_sensor_allocates_nothing_per_sensor(mini_site: Site, model: str) -> None:
    """Per sensor, a ring row (flow signals), a memory of values and movements (sensor health), the newest
    reading time (zone tracker) exist from the start; before, each first reading made an object, a dict entry
    and boxed numbers (0.2 to 1.2 KB a sensor)."""
    site = scaled(mini_site, 600)
    if model == "flow signals":
        fs = FlowSignals(site)
        grown = grown_per_sensor(site, fs.apply)
    elif model == "sensor health":
        h = SensorHealth(site)
        grown = grown_per_sensor(site, lambda r: h.apply(r, r.ts))
    else:
        # Anchors (area counts, densities) keep their latest value per sensor by design: counters only.
        counters = Site(
            msgspec.structs.replace(site.file, sensors=tuple(s for s in site.file.sensors if s.kind == "counter")),
            site.path,
        )
        t = ZoneTracker(counters, CapacityProfile(counters))
        grown = grown_per_sensor(counters, t.apply)
    assert grown < 8, f"{model}: {grown:.1f} bytes per sensor"


def test_tracker_snapshot_lists_every_sensor_heard_from_and_restores_it(mini_site: Site) -> None:
    t = ZoneTracker(mini_site, CapacityProfile(mini_site))
    t.apply(Reading(sensor="seg2-gate", zone="seg-2", kind="flow", ts=T0, seq=1, interval_s=60.0, inflow=5))
    t.apply(Reading(sensor="ghost", zone="seg-2", kind="flow", ts=T0 + 5, seq=1, interval_s=60.0, inflow=1))
    # A site sensor reported under another zone is that zone's business, kept apart from its own column.
    t.apply(Reading(sensor="seg1-west", zone="seg-2", kind="flow", ts=T0 + 7, seq=1, interval_s=60.0, inflow=1))
    snap = t.to_snapshot()
    assert snap["zones"]["seg-2"]["seen"] == {"seg2-gate": T0, "ghost": T0 + 5, "seg1-west": T0 + 7}
    assert snap["zones"]["seg-1"]["seen"] == {}
    again = ZoneTracker(mini_site, CapacityProfile(mini_site))
    again.from_snapshot(snap)
    assert again.to_snapshot() == snap
    later = T0 + 150  # seg-1's sensors never heard from: silent since the zone's first reading
    assert again.problems("seg-2", later) == t.problems("seg-2", later)
    assert again.sensor_issues("seg-1", later) == t.sensor_issues("seg-1", later)


def test_all_rates_at_once_are_each_counters_rates_to_the_bit(mini_site: Site) -> None:
    """FlowSignals.all_rates (numpy over every ring, what detect() uses) against rates() sensor by sensor:
    random intervals, dropouts, late and far-ahead readings; equal floats, the same None."""
    import numpy as np

    site = scaled(mini_site, 40)
    counters = [s for s in site.sensors.values() if s.kind == "counter"]
    rng = np.random.default_rng(3)
    fs = FlowSignals(site)
    t = T0
    compared = 0
    for step in range(120):
        t += float(rng.choice([5.0, 10.0, 30.0, 60.0]))
        for s in counters:
            if rng.random() < 0.3:
                continue  # silent this step
            ts = t - float(rng.choice([0.0, 0.0, 0.0, 45.0, 700.0])) + float(rng.random())
            interval = float(rng.choice([60.0, 30.0, 10.0, 0.0, 600.0]))
            fs.apply(
                Reading(sensor=s.id, zone=s.zone, kind="flow", ts=ts, seq=step, interval_s=interval,
                        inflow=int(rng.integers(0, 90)), outflow=int(rng.integers(0, 90)))
            )  # fmt: skip
        if step % 10 == 9:
            for now in (t, t + 100.0, t + 2000.0):
                by_row = fs.all_rates(now, block=7)
                for s in counters:
                    assert by_row[fs._row[site.index[s.id]]] == fs.rates(s.id, now)
                    compared += 1
    assert compared > 5000
    assert any(r is not None for r in fs.all_rates(t))


def test_all_rates_of_a_ring_at_an_absurd_time_are_its_rates(mini_site: Site) -> None:
    """Bucket numbers beyond 2**52 are not exact in numpy's int64: such a ring is read row by row."""
    fs = FlowSignals(mini_site)
    for k in range(80):
        for sid, ts in (("seg2-gate", 1e17 + 10.0 * k * 2**8), ("seg1-west", T0 + 10.0 * k)):
            zone = mini_site.sensors[sid].zone
            fs.apply(Reading(sensor=sid, zone=zone, kind="flow", ts=ts, seq=k, interval_s=10.0, inflow=k, outflow=1))
    for sid, now in (("seg2-gate", 1e17 + 10.0 * 79 * 2**8), ("seg1-west", T0 + 790.0)):
        rates = fs.all_rates(now)
        assert rates[fs._row[mini_site.index[sid]]] == fs.rates(sid, now)
    assert fs.rates("seg1-west", T0 + 790.0) is not None
