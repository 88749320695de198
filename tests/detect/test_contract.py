"""Every registered detector keeps the contract of detect.base: clone, score before learning, scoring without
side effects, snapshot and reload, bounded memory, guarded learning, and better than chance on a scenario."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest

from detect.base import Decision, Detector, KnowsNormal, Obs, learn_guarded
from detect.registry import DETECTORS, default_surge_detector, make_detector
from detect.surge.compare import Realism, same_kind_of_day, simulate
from detect.surge.monitor import SurgeMonitor
from domain.profile import CapacityProfile
from domain.site import Site
from sim.scenario import load_scenario

NAMES = list(DETECTORS)
ZONE = "seg-1"


def params(det: Detector) -> dict[str, object]:
    """Parameters are the public attributes; what is learned is private."""
    return {k: v for k, v in vars(det).items() if not k.startswith("_")}


def synthetic(n: int) -> list[Obs]:
    """A day-shaped series over two day types, every slot visited, deterministic."""
    out = []
    for i in range(n):
        slot = i % 96
        day_type = ("weekday", "holiday")[(i // 96) % 2]
        expected = 20.0 + 15.0 * math.sin(slot / 96 * 2 * math.pi) ** 2
        value = expected * (1.0 + 0.1 * math.sin(i * 0.7))
        out.append(Obs(ts=60.0 * i, value=value, slot=slot, day_type=day_type, expected=expected))
    return out


@pytest.fixture(scope="module")
def series(mini_site: Site) -> dict[str, list[tuple[Obs, bool]]]:
    """seg-1 of the mini site, as the monitor would see it: two weekdays to learn, a held-out weekday
    (negatives), and New Year's Eve 21:00-23:50 while the crowd builds (positives)."""
    profile = CapacityProfile(mini_site)
    mon = SurgeMonitor(mini_site, profile, detector="profile_ratio")
    realism = Realism()
    assert next(iter(mini_site.zones)) == ZONE
    out: dict[str, list[tuple[Obs, bool]]] = {"train": [], "test": []}
    weekday = load_scenario("weekday")
    for part, k in (("train", 1), ("train", 2), ("test", 3)):
        day = simulate(mini_site, same_kind_of_day(weekday, profile, k), realism=realism)
        for t, v in zip(day.ts.tolist(), day.inflow[:, 0].tolist(), strict=True):
            x = mon.obs(ZONE, t, v)
            assert x is not None
            out[part].append((x, False))
    nye = simulate(mini_site, load_scenario("nye"), realism=realism)
    start, end = nye.ts[0] + 3 * 3600, nye.ts[0] + 5 * 3600 + 50 * 60  # 21:00 .. 23:50
    for t, v in zip(nye.ts.tolist(), nye.inflow[:, 0].tolist(), strict=True):
        x = mon.obs(ZONE, t, v)
        assert x is not None
        if t < start:
            continue  # the early build-up is neither clearly usual nor clearly a surge
        if t <= end:
            out["test"].append((x, True))
    return out


def test_registry_names_match_and_default_is_registered() -> None:
    for name, factory in DETECTORS.items():
        det = factory()
        assert isinstance(det, Detector)
        assert det.name == name
    assert default_surge_detector().name in DETECTORS
    with pytest.raises(ValueError, match="unknown detector 'nope'; known: "):
        make_detector("nope")


@pytest.mark.parametrize("name", NAMES)
def test_clone_is_fresh_with_equal_parameters(name: str) -> None:
    det = DETECTORS[name]()
    fresh_state = det.to_state()
    for x in synthetic(500):
        det.learn_one(x)
    twin = det.clone()
    assert type(twin) is type(det)
    assert params(twin) == params(det)
    assert twin.to_state() == fresh_state
    assert twin is not det


@pytest.mark.parametrize("name", NAMES)
def test_scores_before_any_learning_are_in_range(name: str) -> None:
    det = DETECTORS[name]()
    cases = [
        Obs(ts=0.0, value=0.0, slot=0, day_type="weekday", expected=0.0),
        Obs(ts=0.0, value=30.0, slot=40, day_type="weekday", expected=30.0),
        Obs(ts=0.0, value=1e6, slot=95, day_type="holiday", expected=10.0),
        Obs(ts=0.0, value=5.0, slot=10, day_type="nye", expected=None),
        Obs(ts=0.0, value=5.0, slot=10, day_type="something new", expected=2.0),
    ]
    for x in cases:
        s = det.score_one(x)
        assert isinstance(s, float) and 0.0 <= s <= 1.0, (x, s)


@pytest.mark.parametrize("name", NAMES)
def test_score_one_does_not_change_state(name: str) -> None:
    det = DETECTORS[name]()
    data = synthetic(400)
    for x in data[:300]:
        det.learn_one(x)
    before = json.dumps(det.to_state(), sort_keys=True)
    for x in data[300:]:
        det.score_one(x)
        det.score_one(x._replace(value=x.value * 5))
    assert json.dumps(det.to_state(), sort_keys=True) == before


@pytest.mark.parametrize("name", NAMES)
def test_state_survives_json_and_reproduces_scores(name: str) -> None:
    det = DETECTORS[name]()
    data = synthetic(1500)
    for x in data[:1000]:
        learn_guarded(det, x, Decision())
    restored = DETECTORS[name]()
    restored.from_state(json.loads(json.dumps(det.to_state())))
    probes = [x._replace(value=x.value * f) for x in data[1000:] for f in (1.0, 1.6, 3.0)]
    assert [det.score_one(x) for x in probes] == [restored.score_one(x) for x in probes]
    for x in data[1000:]:  # and they go on learning alike
        det.learn_one(x)
        restored.learn_one(x)
    assert det.to_state() == restored.to_state()


@pytest.mark.parametrize("name", NAMES)
def test_from_state_refuses_what_it_cannot_use(name: str) -> None:
    det = DETECTORS[name]()
    for x in synthetic(200):
        det.learn_one(x)
    kept = det.to_state()
    with pytest.raises(ValueError, match="not by"):
        det.from_state({"kind": "some_other_detector"})
    with pytest.raises(ValueError):
        det.from_state([])  # type: ignore[arg-type]
    assert det.to_state() == kept
    if len(kept) > 1:  # detectors with learned state: a damaged one is refused, nothing half-loaded
        damaged = {k: "garbage" if k != "kind" else v for k, v in kept.items()}
        with pytest.raises(ValueError):
            det.from_state(damaged)
        assert det.to_state() == kept


@pytest.mark.parametrize("name", NAMES)
def test_bad_observations_are_refused_by_name(name: str) -> None:
    det = DETECTORS[name]()
    bad = [
        Obs(ts=0.0, value=math.nan, slot=1, day_type="weekday", expected=3.0),
        Obs(ts=0.0, value=-1.0, slot=1, day_type="weekday", expected=3.0),
        Obs(ts=0.0, value=1.0, slot=96, day_type="weekday", expected=3.0),
        Obs(ts=0.0, value=1.0, slot=1, day_type="weekday", expected=math.inf),
    ]
    for x in bad:
        with pytest.raises(ValueError, match="observation"):
            det.score_one(x)
        with pytest.raises(ValueError, match="observation"):
            det.learn_one(x)


@pytest.mark.parametrize("name", NAMES)
def test_memory_is_bounded(name: str) -> None:
    det = DETECTORS[name]()
    data = synthetic(10_000)
    for x in data[:2000]:
        det.learn_one(x)
    size_2k = len(json.dumps(det.to_state()))
    for x in data[2000:]:
        det.learn_one(x)
    size_10k = len(json.dumps(det.to_state()))
    assert size_10k <= size_2k * 1.05 + 100, (size_2k, size_10k)


@pytest.mark.parametrize("name", NAMES)
def test_seasonal_memory_is_bounded_over_many_day_types(name: str) -> None:
    det = DETECTORS[name]()
    for i in range(50 * 96):  # 50 distinct day types: only a bounded number may be kept
        det.learn_one(Obs(ts=60.0 * i, value=10.0, slot=i % 96, day_type=f"type{i // 96}", expected=10.0))
    assert len(json.dumps(det.to_state())) < 200_000


@pytest.mark.parametrize("name", NAMES)
def test_learn_guarded_does_not_learn_from_flagged_observations(name: str) -> None:
    det = DETECTORS[name]()
    data = synthetic(600)
    for x in data:
        learn_guarded(det, x, Decision())
    before = det.to_state()
    surge = data[-1]._replace(value=data[-1].value * 20)
    score = learn_guarded(det, surge, Decision())
    assert score >= Decision().threshold
    assert det.to_state() == before


@pytest.mark.parametrize("name", NAMES)
def test_better_than_chance_on_a_scenario(name: str, series: dict[str, list[tuple[Obs, bool]]]) -> None:
    """Scores on the NYE build-up rank above scores on a usual weekday: AUC > 0.8."""
    det = DETECTORS[name]()
    decision = Decision()
    for x, _ in series["train"]:
        learn_guarded(det, x, decision)
    pos: list[float] = []
    neg: list[float] = []
    for x, is_surge in series["test"]:
        (pos if is_surge else neg).append(learn_guarded(det, x, decision))
    assert len(pos) > 100 and len(neg) > 500
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    auc = wins / (len(pos) * len(neg))
    assert auc > 0.8, f"{name}: AUC {auc:.3f}"


def test_factories_are_callables_without_arguments() -> None:
    factories: list[Callable[[], Detector]] = list(DETECTORS.values())
    assert len({f().name for f in factories}) == len(factories) >= 4


KNOW_NORMAL = [n for n in NAMES if isinstance(DETECTORS[n](), KnowsNormal)]


def test_the_default_detector_knows_its_normal() -> None:
    # The wall draws inflow against it; profile_ratio learns nothing and leaves the profile's expectation.
    assert isinstance(default_surge_detector(), KnowsNormal)
    assert "profile_ratio" not in KNOW_NORMAL


@pytest.mark.parametrize("name", KNOW_NORMAL)
def test_a_learned_normal_follows_the_zones_own_level_without_changing_state(name: str) -> None:
    """A zone that always runs 1.5x the profile: the detector starts from the profile and learns about 1.5x;
    asking changes nothing."""
    det = DETECTORS[name]()
    assert isinstance(det, KnowsNormal)
    data = [x._replace(value=1.5 * x.expected) for x in synthetic(3000) if x.expected is not None]
    fresh = det.normal(data[0])
    assert fresh is not None and math.isclose(fresh, data[0].expected or 0.0, rel_tol=0.05)  # the prior
    for x in data:
        det.learn_one(x)
    before = json.dumps(det.to_state(), sort_keys=True)
    for x in data[-96:]:
        got = det.normal(x._replace(value=0.0))  # the observed value plays no part
        assert got is not None and math.isclose(got, x.value, rel_tol=0.1), (x, got)
    assert json.dumps(det.to_state(), sort_keys=True) == before
