"""The shipped Lujiazui site: structure, geometry, sensors, and its calibration against public figures."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from domain.levels import Level
from domain.loader import default_site_path, load_site
from domain.profile import SLOTS_PER_DAY, CapacityProfile
from domain.site import Site, Zone
from tests.domain.geometry import area, contains, edges_cross, is_simple
from tests.domain.occupancy import expected_occupancy

PEAK_DAY = 1_470_000
ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
OPEN_AIR = {"riverside_segment", "plaza", "bridge", "street", "park"}


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site()


@pytest.fixture(scope="module")
def profile(site: Site) -> CapacityProfile:
    return CapacityProfile(site)


@pytest.fixture(scope="module")
def holiday_occupancy(profile: CapacityProfile) -> np.ndarray:
    return expected_occupancy(profile, "holiday")


def _zones(site: Site, kind: str) -> list[Zone]:
    return [z for z in site.zones.values() if z.kind == kind]


# ---------------------------------------------------------------- structure


def test_default_site_is_the_shipped_lujiazui_file(site: Site) -> None:
    assert default_site_path().name == "lujiazui.toml"
    assert site.info.id == "lujiazui"
    assert site.info.peak_day_visits == PEAK_DAY
    assert site.info.timezone == "Asia/Shanghai"


def test_six_grids_three_residential_three_business(site: Site) -> None:
    kinds = sorted(g.kind for g in site.grids.values())
    assert kinds == ["business"] * 3 + ["residential"] * 3
    assert {g.name_zh for g in site.grids.values()} >= {"陆家嘴金融城", "新上海商业城", "滨江船厂带"}


def test_business_grids_have_fifteen_micro_grids(site: Site) -> None:
    business = {g.id for g in site.grids.values() if g.kind == "business"}
    assert sum(m.grid in business for m in site.micro_grids.values()) >= 15
    for g in site.grids.values():
        assert any(m.grid == g.id for m in site.micro_grids.values()), f"grid {g.id} has no micro-grid"


def test_every_residential_grid_has_a_residential_zone(site: Site) -> None:
    residential = {g.id for g in site.grids.values() if g.kind == "residential"}
    assert {z.grid for z in _zones(site, "residential")} == residential


def test_zone_count_and_ids(site: Site) -> None:
    assert 30 <= len(site.zones) <= 40
    for ident in [*site.zones, *site.sensors, *site.grids, *site.micro_grids]:
        assert ID_RE.match(ident), f"{ident!r} is not lowercase-hyphen"


def test_riverside_is_a_chain_of_at_least_eight_segments(site: Site) -> None:
    segs = site.riverside()
    assert len(segs) >= 8
    assert [z.segment for z in segs] == list(range(1, len(segs) + 1))
    for before, after in itertools.pairwise(segs):
        assert after.id in before.neighbours, f"{before.id} and {after.id} follow each other along the river"
    for z in segs:
        assert 30 <= z.dwell_min <= 60


def test_metro_exits_of_lines_2_and_14(site: Site) -> None:
    exits = _zones(site, "metro_exit")
    assert len(exits) >= 4
    names = " ".join(z.name_en for z in exits)
    assert "line 2" in names and "line 14" in names
    for z in exits:
        assert 3 <= z.dwell_min <= 5
        assert z.thresholds is not None, (
            "metro exits are pinch points: they act earlier than the site default"
        )
        assert z.thresholds.share_for(Level.II) < site.thresholds.share_for(Level.II)


@pytest.mark.parametrize(
    "zone_id",
    [
        "pearl-tower-plaza",
        "pearl-ring-bridge",
        "super-brand-mall",
        "ifc-mall",
        "fucheng-road",
        "shipyard-1862",
    ],
)
def test_named_hotspots_exist(site: Site, zone_id: str) -> None:
    assert site.zones[zone_id].hotspot


def test_hotspot_kinds_cover_the_districts_list(site: Site) -> None:
    kinds = {z.kind for z in site.zones.values() if z.hotspot}
    assert kinds >= {"plaza", "bridge", "metro_exit", "mall", "riverside_segment", "street"}
    assert {"office", "park", "residential"} <= {z.kind for z in site.zones.values()}


def test_neighbours_are_symmetric_and_connected(site: Site) -> None:
    for z in site.zones.values():
        assert len(set(z.neighbours)) == len(z.neighbours), f"{z.id} lists a neighbour twice"
        for n in z.neighbours:
            assert z.id in site.zones[n].neighbours, f"{z.id} → {n} but not back"
    # Every zone can be reached from the Pearl Tower plaza by walking through neighbours.
    seen, todo = {"pearl-tower-plaza"}, ["pearl-tower-plaza"]
    while todo:
        for n in site.zones[todo.pop()].neighbours:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    assert seen == set(site.zones)


def test_visit_shares_add_to_one(site: Site) -> None:
    assert sum(z.visit_share for z in site.zones.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(z.visit_share > 0 for z in site.zones.values())


def test_capacity_rule_states_the_arithmetic(site: Site) -> None:
    for z in site.zones.values():
        assert f"{z.capacity:,}" in z.capacity_rule, f"{z.id}: rule does not state the capacity"
        assert "m²" in z.capacity_rule


def test_open_air_capacity_is_area_over_space_per_person(site: Site) -> None:
    # Promenades, plazas, the bridge and streets are "full" at 1 person/m²; the park at 0.5/m².
    for z in site.zones.values():
        if z.kind in OPEN_AIR:
            per_person = 2.0 if z.kind == "park" else 1.0
            assert z.capacity == pytest.approx(z.area_m2 / per_person, rel=0.01), z.id


# ---------------------------------------------------------------- geometry


def test_polygons_are_simple_and_hold_their_walkable_area(site: Site) -> None:
    for z in site.zones.values():
        assert is_simple(z.polygon), f"{z.id}: polygon crosses itself"
        if z.kind in OPEN_AIR:
            assert z.area_m2 <= area(z.polygon), f"{z.id}: effective area larger than its outline"


def test_polygons_do_not_overlap(site: Site) -> None:
    zones = list(site.zones.values())
    for a, b in itertools.combinations(zones, 2):
        assert not edges_cross(a.polygon, b.polygon), f"{a.id} and {b.id} overlap"
    # Edges crossing misses one polygon lying inside another: sample a 2 m lattice offset off the
    # round coordinates and require no point to fall inside two zones.
    px, py = np.meshgrid(np.arange(-1.0, 2601.0, 2.0), np.arange(-1.0, 2101.0, 2.0))
    hits = np.zeros(px.shape, dtype=np.int8)
    for z in zones:
        inside = contains(z.polygon, px, py)
        assert inside.any(), f"{z.id}: polygon is smaller than the sampling lattice"
        hits += inside
    assert hits.max() == 1


def test_river_lies_west_and_north(site: Site) -> None:
    xs = [x for z in site.zones.values() for x, _ in z.polygon]
    ys = [y for z in site.zones.values() for _, y in z.polygon]
    for seg in site.riverside():
        sx = [x for x, _ in seg.polygon]
        sy = [y for _, y in seg.polygon]
        assert min(sx) == min(xs) or max(sy) == max(ys), f"{seg.id} does not touch the river"


# ---------------------------------------------------------------- sensors


def test_every_zone_has_counters_and_an_occupancy_sensor(site: Site) -> None:
    for z in site.zones.values():
        sensors = site.sensors_of(z.id)
        counters = [s for s in sensors if s.kind == "counter"]
        occupancy = [s for s in sensors if s.kind in ("area", "density")]
        assert counters, f"{z.id} has no counter"
        assert occupancy, f"{z.id} has no area or density sensor to anchor its occupancy"
        assert all(s.entrance for s in counters), f"{z.id}: a counter without an entrance"
        assert len({s.entrance for s in counters}) == len(counters)


def test_sensor_mix(site: Site) -> None:
    sensors = list(site.sensors.values())
    assert 120 <= len(sensors) <= 200
    counters = [s for s in sensors if s.kind == "counter"]
    assert {s.mode for s in counters} == {"interval", "total"}
    assert sum(s.direction == "reversed" for s in counters) >= 2
    assert {s.kind for s in sensors} == {"counter", "area", "density"}
    for s in sensors:
        assert s.interval_s == (60.0 if s.kind == "counter" else 30.0), s.id


def test_topics_are_lowercase_and_unique(site: Site) -> None:
    topics = [site.topic_of(s, s.kind) for s in site.sensors.values()]
    assert len(set(topics)) == len(topics)
    assert all(t == t.lower() and not t.startswith("/") for t in topics)


# ---------------------------------------------------------------- profile and calibration


def test_peak_day_sums_to_1_47_million(profile: CapacityProfile) -> None:
    assert profile.arrivals("holiday").sum() == pytest.approx(PEAK_DAY, rel=1e-6)


def test_day_types_order(profile: CapacityProfile) -> None:
    weekday = profile.arrivals("weekday").sum()
    holiday = profile.arrivals("holiday").sum()
    nye = profile.arrivals("nye").sum()
    assert 0.55 * PEAK_DAY <= weekday <= 0.65 * PEAK_DAY
    assert weekday < holiday < nye


def _peak_hour(profile: CapacityProfile, zone_id: str, day_type: str) -> float:
    row = profile.arrivals(day_type)[profile.zone_pos[zone_id]]
    assert row.shape == (SLOTS_PER_DAY,)
    return float(np.argmax(row)) / 4.0


@pytest.mark.parametrize(
    ("zone_id", "day_type", "earliest", "latest"),
    [
        ("shanghai-tower", "weekday", 7.5, 9.5),  # commute arrivals
        ("riverside-financial-city", "weekday", 7.5, 9.5),
        ("metro-exit-6", "weekday", 7.5, 9.5),
        ("pearl-ring-bridge", "weekday", 7.5, 9.5),
        ("riverside-s05", "weekday", 19.0, 22.0),  # the lights on the river
        ("riverside-s05", "holiday", 19.0, 22.0),
        ("riverside-s08", "holiday", 19.0, 22.0),
        ("fucheng-road", "holiday", 19.0, 22.0),
        ("pearl-tower-plaza", "holiday", 9.0, 21.0),  # the tower's opening hours
        ("super-brand-mall", "holiday", 11.0, 21.0),
        ("ifc-mall", "weekday", 11.0, 21.0),
        ("laoshan-residential", "weekday", 17.0, 21.0),  # coming home
    ],
)
def test_shapes_peak_where_expected(
    profile: CapacityProfile, zone_id: str, day_type: str, earliest: float, latest: float
) -> None:
    assert earliest <= _peak_hour(profile, zone_id, day_type) <= latest


def test_metro_weekday_has_both_commute_peaks(profile: CapacityProfile) -> None:
    row = profile.arrivals("weekday")[profile.zone_pos["metro-exit-1"]]
    morning, midday, evening = row[30:38].max(), row[44:56].mean(), row[70:76].max()
    assert morning > 2 * midday and evening > 2 * midday


def test_malls_closed_at_night(profile: CapacityProfile) -> None:
    row = profile.arrivals("holiday")[profile.zone_pos["ifc-mall"]]
    assert row[:36].sum() == 0  # before 09:00
    assert row[90:].sum() == 0  # after 22:30


def test_normal_peak_day_stays_below_yellow(
    site: Site, profile: CapacityProfile, holiday_occupancy: np.ndarray
) -> None:
    """The profile alone never puts a zone at III yellow: alerts come from what differs from normal."""
    for i, zid in enumerate(profile.zone_ids):
        share = holiday_occupancy[i].max() / site.zones[zid].capacity
        assert share < site.thresholds_for(zid).share_for(Level.III), (
            f"{zid} at {share:.0%} on a normal peak day"
        )


def test_hotspots_are_busy_on_a_peak_day(
    site: Site, profile: CapacityProfile, holiday_occupancy: np.ndarray
) -> None:
    for zid in ("riverside-s06", "pearl-tower-plaza", "pearl-ring-bridge", "fucheng-road"):
        share = holiday_occupancy[profile.zone_pos[zid]].max() / site.zones[zid].capacity
        assert share >= 0.5, f"{zid} only {share:.0%} full on the busiest normal day"


def test_riverside_calibrated_against_the_bund(
    site: Site, profile: CapacityProfile, holiday_occupancy: np.ndarray
) -> None:
    """The Bund held 54,000-91,000 at once on New Year's Eves and saw 320,000-570,000 a day."""
    segs = [z.id for z in site.riverside()]
    rows = [profile.zone_pos[z] for z in segs]
    capacity = sum(site.zones[z].capacity for z in segs)
    # A Bund-record crowd on our promenade is past the 80% stop-admissions line (II orange) but,
    # spread evenly, not yet at I red; the Bund's low NYE figure fits well within capacity.
    assert 0.8 <= 91_000 / capacity < 0.95
    assert 54_000 / capacity < 0.6
    daily = profile.arrivals("holiday")[rows].sum()
    assert 320_000 <= daily <= 570_000
    at_once = holiday_occupancy[rows].sum(axis=0).max()
    assert at_once < 54_000, "a normal peak day is below the Bund's New Year's Eve crowds"


def test_docs_list_every_zone_with_its_capacity(site: Site) -> None:
    """docs/site.md carries the zone table; it must not drift from the file."""
    doc = (Path(__file__).parents[2] / "docs" / "site.md").read_text(encoding="utf-8")
    for z in site.zones.values():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{z.id}`")), None)
        assert row is not None, f"docs/site.md has no row for {z.id}"
        assert f"| {z.capacity:,} |" in row, f"docs/site.md shows another capacity for {z.id}"
