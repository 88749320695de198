"""CapacityForecaster: ETA on a ramp, silence on flat, noisy and falling zones, the NYE build-up, restart."""

from __future__ import annotations

import json
import math
import random

import pytest

from detect.forecast import CapacityForecaster
from detect.state import ZoneTracker
from domain.levels import Level
from domain.loader import load_site
from domain.profile import CapacityProfile
from domain.site import Site
from domain.values import ZoneState
from ingest.pipeline import Ingestor
from sim.scenario import load_scenario
from sim.stream import Simulation

T0 = 1_798_000_000.0


def state(ts: float, occ: float, zone: str = "seg-1", cap: int = 2000, net: float = 0.0) -> ZoneState:
    return ZoneState(
        zone=zone,
        ts=ts,
        occupancy=occ,
        capacity=cap,
        share=occ / cap,
        density=occ / cap,
        inflow_per_min=60.0 + max(net, 0.0),
        outflow_per_min=60.0 - min(net, 0.0),
        arrivals_today=0,
    )


def feed(fc: CapacityForecaster, occs: list[float], step_s: float = 10.0, net: float = 0.0) -> float:
    ts = T0
    for i, occ in enumerate(occs):
        ts = T0 + i * step_s
        fc.update(state(ts, occ, net=net))
    return ts


def test_eta_on_a_linear_ramp_is_exact_within_a_minute(mini_site: Site) -> None:
    fc = CapacityForecaster(mini_site)
    # 20 minutes of seg-1 rising 25 people a minute from 600: at the end 1,100, red (1,900) is 32 min away,
    # orange (1,600) 20 min, yellow (1,400) 12 min, blue (1,200) 4 min.
    now = feed(fc, [600 + 25 * i * 10 / 60 for i in range(121)], net=25.0)
    assert fc.eta("seg-1", Level.II) == pytest.approx(20.0, abs=1.0)
    assert fc.eta("seg-1", Level.III) == pytest.approx(12.0, abs=1.0)
    assert fc.eta("seg-1", Level.I) is None  # beyond the 30-minute horizon
    assert fc.detect(state(now, 1100.0, net=25.0), now) is None
    f = fc.forecast("seg-1")
    assert [p.horizon_min for p in f.points] == [5, 10, 15, 20, 30]
    assert f.points[2].occupancy == pytest.approx(1100 + 25 * 15, abs=5)
    assert all(p.low <= p.occupancy <= p.high for p in f.points)
    assert fc.describe("seg-1") == "reaches IV blue in about 4 min and II orange in about 20 min"

    # Six more minutes: red is 26 min away and predicted within the horizon: an orange forecast alert.
    now = feed(fc, [600 + 25 * i * 10 / 60 for i in range(157)], net=25.0)
    occ = 600 + 25 * 156 * 10 / 60
    d = fc.detect(state(now, occ, net=25.0), now)
    assert d is not None and d.cause == "forecast" and d.level is Level.II
    assert d.evidence["eta_min_red"] == pytest.approx(26.0, abs=1.0)
    assert d.evidence["eta_min_orange"] == pytest.approx(14.0, abs=1.0)
    assert d.evidence["forecast_30"] == pytest.approx(occ + 25 * 30, abs=10)
    assert d.evidence["net_flow_per_min"] == pytest.approx(25.0)
    assert d.message.startswith("Promenade segment 1 reaches I red in about 26 min (forecast ")
    assert "/ 2,000 at " in d.message

    # Within 10 minutes of red: I red (less time left than the response needs).
    now = feed(fc, [600 + 25 * i * 10 / 60 for i in range(262)], net=25.0)
    occ = 600 + 25 * 261 * 10 / 60
    d = fc.detect(state(now, occ, net=25.0), now)
    assert d is not None and d.level is Level.I and d.evidence["eta_min_red"] < 10.0


@pytest.mark.parametrize("noise", [0.0, 40.0])
def test_no_forecast_on_a_flat_zone(mini_site: Site, noise: float) -> None:
    rng = random.Random(3)
    fc = CapacityForecaster(mini_site)
    hits = 0
    for i in range(720):  # two hours at 10 s, hovering at 1,500 (75%) with noise of sd 40
        ts = T0 + 10 * i
        occ = 1500 + rng.gauss(0, noise)
        s = state(ts, occ, net=rng.gauss(0, 5))
        fc.update(s)
        hits += fc.detect(s, ts) is not None
        assert fc.eta("seg-1", Level.I) is None
    assert hits == 0
    assert fc.describe("seg-1") == "steady"


def test_no_forecast_on_a_falling_zone(mini_site: Site) -> None:
    fc = CapacityForecaster(mini_site)
    now = feed(fc, [1800 - 10 * i * 10 / 60 for i in range(120)], net=-10.0)
    assert fc.detect(state(now, 1600.0, net=-10.0), now) is None
    assert fc.eta("seg-1", Level.I) is None
    assert fc.eta("seg-1", Level.II) == 0.0  # still above orange: already there
    assert fc.describe("seg-1") == "falling"


def test_a_blip_or_contradicting_counters_raise_nothing(mini_site: Site) -> None:
    fc = CapacityForecaster(mini_site)
    occs = [1500.0] * 90 + [1500.0 + 40 * k for k in range(1, 9)]  # 80 s of a jump
    now = feed(fc, occs)
    assert not fc.rising("seg-1")  # not yet consistent for min_rising_s
    fc2 = CapacityForecaster(mini_site)
    now = feed(fc2, [600 + 40 * i * 10 / 60 for i in range(200)], net=-30.0)
    assert fc2.detect(state(now, 1400.0, net=-30.0), now) is None  # counters say it empties


def test_unhealthy_states_are_not_learned(mini_site: Site) -> None:
    fc = CapacityForecaster(mini_site)
    bad = state(T0, 100.0)
    bad.healthy = False
    fc.update(bad)
    fc.update(state(T0, 1.0, zone="nowhere"))
    assert fc.ignored == 2
    assert fc.forecast("seg-1").points == ()
    assert fc.describe("seg-1") == "not enough data yet to forecast"


def test_snapshot_round_trip(mini_site: Site) -> None:
    fc = CapacityForecaster(mini_site)
    now = feed(fc, [600 + 25 * i * 10 / 60 for i in range(160)], net=25.0)
    data = json.loads(json.dumps(fc.to_state()))
    back = CapacityForecaster(mini_site)
    back.from_state(data)
    assert back.forecast("seg-1") == fc.forecast("seg-1")
    assert back.eta("seg-1", Level.I) == fc.eta("seg-1", Level.I)
    s = state(now, 600 + 25 * 159 * 10 / 60, net=25.0)
    assert back.detect(s, now) == fc.detect(s, now)
    with pytest.raises(ValueError, match="version"):
        back.from_state({"version": 99})
    with pytest.raises(ValueError, match="does not fit"):
        back.from_state({"version": 1, "zones": {"seg-1": {"samples": [[1, 2]], "rising_since": None}}})
    assert back.forecast("seg-1") == fc.forecast("seg-1")  # a bad state leaves it as it was


def test_memory_is_bounded(mini_site: Site) -> None:
    fc = CapacityForecaster(mini_site)
    feed(fc, [1000.0] * 5000, step_s=1.0)
    h = fc._zones["seg-1"]
    assert h.samples.maxlen is not None and len(h.samples) <= h.samples.maxlen <= 50


def test_nye_riverside_red_forecast_ten_minutes_ahead() -> None:
    """The NYE build-up on the Lujiazui site, 19:30-22:00, through ingest and the tracker: every riverside
    segment that crosses capacity in the window gets a forecast alert ≥ 10 min (in fact ≥ 30) before."""
    site = load_site()
    sim = Simulation(site, load_scenario("nye"), "19:30", 2.5 * 3600)
    ingest = Ingestor(site)
    tracker = ZoneTracker(site, CapacityProfile(site))
    fc = CapacityForecaster(site)
    riverside = {z.id for z in site.riverside()}
    first: dict[str, float] = {}
    tick = math.nan
    for m in sim.messages():
        if math.isnan(tick):
            tick = m.sim_ts
        while m.sim_ts >= tick:
            for s in tracker.snapshot(tick):
                if s.zone in riverside:
                    fc.update(s)
                    if fc.detect(s, tick) is not None:
                        first.setdefault(s.zone, tick)
            tick += 30.0
        for r in ingest.feed(m.topic, m.payload, m.sim_ts):
            tracker.apply(r)
    sim.truth.finish()
    crossings = {w.zone: w.crossing for w in sim.truth.windows if w.zone in riverside}
    assert len(crossings) >= 5
    leads = {z: (c - first[z]) / 60 if z in first else None for z, c in crossings.items()}
    assert all(lead is not None and lead >= 10.0 for lead in leads.values()), leads
    assert sorted(lead for lead in leads.values() if lead is not None)[len(leads) // 2] >= 30.0
