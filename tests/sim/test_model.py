from __future__ import annotations

import numpy as np

from domain.site import Site
from sim.model import FlowModel
from sim.scenario import load_scenario
from sim.sensors import SensorBank
from tests.sim.helpers import scenario


def test_people_are_conserved_and_never_negative(mini_site: Site) -> None:
    model = FlowModel(mini_site, load_scenario("nye"), np.random.default_rng(1))
    total_in = total_out = 0
    while model.t < model.t1:
        before = model.occupancy.copy()
        arrivals, departures = model.step()
        assert np.array_equal(model.occupancy - before, arrivals - departures)
        assert (model.occupancy >= 0).all()
        assert (departures <= before).all()
        total_in += int(arrivals.sum())
        total_out += int(departures.sum())
    assert total_in > 10_000 and total_out > 10_000


def test_arrivals_follow_the_profile(mini_site: Site) -> None:
    """Without surges, an hour's arrivals match the capacity profile's expectation (Poisson: within 5%)."""
    model = FlowModel(mini_site, scenario(), np.random.default_rng(2))
    expected = model.expected_since_midnight(model.t1) - model.expected_since_midnight(model.t0)
    got = np.zeros(len(model.zone_ids))
    while model.t < model.t1:
        got += model.step()[0]
    assert np.allclose(got, expected, rtol=0.05)


def test_surge_multiplier_ramps_to_its_peak(mini_site: Site) -> None:
    sc = scenario(
        """
[[surges]]
zones = ["plaza"]
start = 18:10:00
peak = 18:30:00
end = 18:50:00
multiplier = 3.0
"""
    )
    model = FlowModel(mini_site, sc, np.random.default_rng(3))
    plaza = model.zone_ids.index("plaza")
    base = model.base_rate_per_s(model.t0 + 1800)
    assert model.rate_per_s(model.t0 + 1800)[plaza] == base[plaza] * 3.0
    assert np.isclose(
        model.rate_per_s(model.t0 + 1200)[plaza], model.base_rate_per_s(model.t0 + 1200)[plaza] * 2.0
    )
    assert model.rate_per_s(model.t0 + 300)[plaza] == model.base_rate_per_s(model.t0 + 300)[plaza]
    seg1 = model.zone_ids.index("seg-1")
    assert model.rate_per_s(model.t0 + 1800)[seg1] == base[seg1]


def test_counters_split_zone_flows_and_respect_direction(mini_site: Site) -> None:
    """seg-1 has an interval counter (in) and a total counter mounted reversed: together they see every
    person, and the reversed one reports entries as `out_total` on the wire."""
    sc = scenario()
    model = FlowModel(mini_site, sc, np.random.default_rng(4))
    bank = SensorBank(mini_site, model.zone_ids, np.random.default_rng(5), model.t0)
    zone = np.array([model.zone_ids.index(z) for z in ("seg-1", "seg-2", "plaza")])
    arrivals = np.zeros(3, dtype=np.int64)
    departures = np.zeros(3, dtype=np.int64)
    arrivals[zone] = [100, 40, 30]
    departures[zone] = [20, 5, 0]
    bank.observe(arrivals, departures)
    readings = {e.sensor: e.msg for e in bank.report(model.t0 + 60, model.occupancy)}
    west, east, gate = readings["seg1-west"], readings["seg1-east"], readings["seg2-gate"]
    assert west.in_ + east.out_total == 100  # type: ignore[union-attr]
    assert west.out + east.in_total == 20  # type: ignore[union-attr]
    assert 25 < west.in_ < 75  # type: ignore[union-attr]  # an even split, not all on one counter
    assert (gate.in_, gate.out) == (40, 5)  # type: ignore[union-attr]
    assert readings["plaza-cam"].density >= 0  # type: ignore[union-attr]
    assert bank.report(model.t0 + 70, model.occupancy) == []  # nothing due again before the next minute
