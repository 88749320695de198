"""alerts.measures: the default checklists, strict loading, checklist assembly, diversion targets, the docs."""

from __future__ import annotations

import doctest
import io
import json
import tomllib
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest

import alerts.measures
from alerts.measures import (
    CAUSES,
    KINDS,
    MAX_EN,
    PREPARE_NEXT,
    REGENERATE,
    CauseMeasures,
    Measures,
    MeasuresError,
    default_measures_path,
    diversion_targets,
    load_measures,
    main,
    render_markdown,
)
from domain.levels import GRADED, Level
from domain.loader import load_site
from domain.site import Site, Zone, ZoneKind
from domain.values import Cause, ZoneState

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site()


@pytest.fixture(scope="module")
def measures() -> Measures:
    return load_measures()


def zone_of(site: Site, kind: str, *, hotspot: bool | None = None) -> Zone:
    return next(z for z in site.zones.values() if z.kind == kind and (hotspot is None or z.hotspot is hotspot))


# ---- the default file ------------------------------------------------------------------------------------


def test_file_covers_every_zone_kind_and_cause() -> None:
    # A new ZoneKind or Cause must get its table here, or load_measures could not be complete.
    assert set(KINDS) == set(get_args(ZoneKind))
    assert set(Measures.__struct_fields__) == set(KINDS) | {"causes", "hotspot"}
    assert set(CauseMeasures.__struct_fields__) == set(get_args(Cause)) == set(CAUSES)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("level", GRADED, ids=lambda lv: lv.label)
def test_every_kind_and_level_has_a_checklist(measures: Measures, kind: str, level: Level) -> None:
    lines = measures.for_kind(kind).at(level)
    assert lines
    for line in lines:
        zh, en = line.split(" — ")
        assert zh.strip() and en.strip() and len(en) <= MAX_EN


def test_riverside_red_exits_only_holds_far_off_and_acts_off_site(site: Site, measures: Measures) -> None:
    lines = measures.checklist(site.zones["riverside-s05"], Level.I, "capacity")
    text = "\n".join(lines)
    assert "只出不进" in lines[0] and "Exit only" in lines[0]  # first thing to do
    assert "远端截流" in text and "Hold crowds far off" in text
    assert "轮渡停航" in text or "外滩观光隧道" in text
    assert "ferries" in text or "sightseeing tunnel" in text


def test_riverside_orange_stops_admissions_before_exit_only(site: Site, measures: Measures) -> None:
    orange = measures.checklist(site.zones["riverside-s03"], Level.II, "capacity")
    assert "80%" in orange[0] and "LB/T 034" in orange[0]
    assert not any("只出不进" in m for m in orange)  # exit-only is red's, not orange's


def test_metro_exit_red_passes_trains_through_the_station(site: Site, measures: Measures) -> None:
    for zone in (z for z in site.zones.values() if z.kind == "metro_exit"):
        text = "\n".join(measures.checklist(zone, Level.I, "capacity"))
        assert "列车越站" in text and "trains pass without stopping" in text
        assert "跳站" in text


def test_normal_has_no_checklist(site: Site, measures: Measures) -> None:
    for zone in site.zones.values():
        assert measures.checklist(zone, Level.NORMAL, "capacity") == []


@pytest.mark.parametrize("cause", ["counterflow", "stall"])
def test_counterflow_and_stall_put_their_measures_first(site: Site, measures: Measures, cause: str) -> None:
    zone = site.zones["pearl-ring-bridge"]
    plain = measures.checklist(zone, Level.II, "capacity")
    lines = measures.checklist(zone, Level.II, cause)
    added = list(measures.for_cause(cause))
    assert lines[: len(added)] == added
    assert lines[len(added) :] == plain
    assert any("截停上游" in m and "Stop inflow upstream" in m for m in added)
    assert any("应急通道" in m and "emergency lane" in m for m in added)
    assert any("广播" in m for m in added)
    assert not any("应急通道" in m for m in plain)


def test_sensor_cause_asks_for_an_eye_count(site: Site, measures: Measures) -> None:
    lines = measures.checklist(site.zones["central-green"], Level.III, "sensor")
    assert "目测" in lines[0] and "by eye" in lines[0]
    assert any("uncertain" in m for m in lines)


def test_forecast_gets_the_next_levels_measures_ready(site: Site, measures: Measures) -> None:
    zone = site.zones["riverside-s07"]  # not a hotspot: no hotspot line at the end
    lines = measures.checklist(zone, Level.II, "forecast")
    own = [*measures.for_cause("forecast"), *measures.for_kind(zone.kind).at(Level.II)]
    assert lines[: len(own)] == own
    ready = lines[len(own) :]
    red = [m for m in measures.for_kind(zone.kind).at(Level.I) if m not in own]
    assert len(ready) == PREPARE_NEXT
    for line, source in zip(ready, red, strict=False):
        zh, en = source.split(" — ")
        assert line == f"预备 · {zh} — Get ready · {en}"
    assert any("轮渡" in m for m in ready)  # the off-site request that needs lead time is among them


def test_forecast_at_red_has_nothing_further_to_prepare(site: Site, measures: Measures) -> None:
    zone = site.zones["riverside-s07"]
    lines = measures.checklist(zone, Level.I, "forecast")
    assert lines == [*measures.for_cause("forecast"), *measures.for_kind(zone.kind).at(Level.I)]


def test_hotspot_line_only_for_hotspots(site: Site, measures: Measures) -> None:
    hot, calm = zone_of(site, "plaza", hotspot=True), zone_of(site, "plaza", hotspot=False)
    hot_lines = measures.checklist(hot, Level.IV, "capacity")
    calm_lines = measures.checklist(calm, Level.IV, "capacity")
    assert hot_lines == calm_lines + list(measures.hotspot.at(Level.IV))
    assert measures.hotspot.at(Level.IV) and "Hotspot" in hot_lines[-1]


def test_no_checklist_repeats_a_line(site: Site, measures: Measures) -> None:
    for zone in site.zones.values():
        for level in GRADED:
            for cause in CAUSES:
                lines = measures.checklist(zone, level, cause)
                assert len(lines) == len(set(lines)), (zone.id, level, cause)


def test_unknown_cause_is_an_error(site: Site, measures: Measures) -> None:
    with pytest.raises(ValueError, match=r"unknown alert cause 'crowd'.*counterflow"):
        measures.checklist(site.zones["riverside-s01"], Level.II, "crowd")


def test_docstring_examples() -> None:
    result = doctest.testmod(alerts.measures)
    assert result.attempted > 0 and result.failed == 0


# ---- strict loading --------------------------------------------------------------------------------------


def default_data() -> dict[str, Any]:
    return tomllib.loads(default_measures_path().read_text(encoding="utf-8"))


def write_toml(path: Path, data: dict[str, dict[str, Any]]) -> Path:
    """Tables of lists as TOML (a JSON array of strings or numbers is a valid TOML array)."""
    lines: list[str] = []
    for table, entries in data.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in entries.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: dict[str, Any]) -> str:
    path = write_toml(tmp_path / "measures.toml", data)
    with pytest.raises(MeasuresError) as info:
        load_measures(path)
    message = str(info.value)
    assert message.startswith(str(path)), "the error names the file"
    return message


def test_default_file_round_trips_through_the_test_writer(tmp_path: Path) -> None:
    assert load_measures(write_toml(tmp_path / "m.toml", default_data())) == load_measures()


def test_missing_level_is_named(tmp_path: Path) -> None:
    data = default_data()
    del data["plaza"]["I"]
    msg = load_error(tmp_path, data)
    assert "zone kind 'plaza'" in msg and "level I red is missing" in msg


def test_every_missing_kind_and_level_is_named_at_once(tmp_path: Path) -> None:
    data = default_data()
    del data["metro_exit"], data["park"], data["plaza"]["I"], data["plaza"]["IV"], data["bridge"]["II"]
    msg = load_error(tmp_path, data)
    assert "5 problem(s)" in msg
    for expected in [
        "zone kind 'metro_exit' is missing",
        "zone kind 'park' is missing",
        "zone kind 'plaza': level IV blue is missing",
        "zone kind 'plaza': level I red is missing",
        "zone kind 'bridge': level II orange is missing",
    ]:
        assert expected in msg


def test_missing_kind_is_named(tmp_path: Path) -> None:
    data = default_data()
    del data["metro_exit"]
    msg = load_error(tmp_path, data)
    assert "zone kind 'metro_exit' is missing" in msg and "IV, III, II and I" in msg


def test_unknown_level_key_is_named(tmp_path: Path) -> None:
    data = default_data()
    data["bridge"]["V"] = ["桥 — Bridge"]
    msg = load_error(tmp_path, data)
    assert "zone kind 'bridge'" in msg and "unknown level 'V'" in msg and "IV (blue)" in msg


def test_unknown_kind_is_named_with_a_suggestion(tmp_path: Path) -> None:
    data = default_data()
    data["plazza"] = data.pop("plaza")
    msg = load_error(tmp_path, data)
    assert "unknown table [plazza] (did you mean 'plaza'?)" in msg
    assert "zone kind 'plaza' is missing" in msg


def test_kind_that_is_not_a_table_is_named(tmp_path: Path) -> None:
    path = tmp_path / "measures.toml"
    text = default_measures_path().read_text(encoding="utf-8")
    path.write_text("plaza = 3\n" + text.replace("[plaza]", "[plaza_old]"), encoding="utf-8")
    with pytest.raises(MeasuresError, match=r"zone kind 'plaza': expected `object`, got `int`; write a table"):
        load_measures(path)


def test_unknown_hotspot_level_is_named(tmp_path: Path) -> None:
    data = default_data()
    data["hotspot"]["red"] = ["重点 — Hotspot"]
    msg = load_error(tmp_path, data)
    assert "hotspot: unknown level 'red'" in msg


def test_unknown_cause_is_named(tmp_path: Path) -> None:
    data = default_data()
    data["causes"]["stalled"] = ["停滞 — Stalled"]
    msg = load_error(tmp_path, data)
    assert "unknown cause 'stalled' (did you mean 'stall'?)" in msg and "counterflow" in msg


def test_wrong_type_names_kind_level_and_item(tmp_path: Path) -> None:
    data = default_data()
    data["mall"]["III"] = "扶梯单向运行 — Escalators one way"
    msg = load_error(tmp_path, data)
    assert "zone kind 'mall', level III yellow: expected `array`, got `str`" in msg

    data = default_data()
    data["mall"]["II"][1] = 80
    msg = load_error(tmp_path, data)
    assert "zone kind 'mall', level II orange, item 2: expected `str`, got `int`" in msg


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("One-way flow on the promenade", "write one line \"中文 — English\" with one ' — ' between them"),
        ("单向通行 — ", "needs Chinese before ' — ' and English after it"),
        ("One way — One-way flow", "needs Chinese before ' — ' and English after it"),
        ("单向通行 — " + "very " * 12 + "long", "too long for one line on a phone"),
        ("单向" * 11 + " — One way", "too long for one line on a phone"),
    ],
)
def test_badly_written_measure_is_named(tmp_path: Path, line: str, expected: str) -> None:
    data = default_data()
    data["park"]["II"].append(line)
    n = len(data["park"]["II"])
    msg = load_error(tmp_path, data)
    assert f"zone kind 'park', level II orange, item {n}: {expected}" in msg


def test_empty_list_and_duplicates_are_all_reported(tmp_path: Path) -> None:
    data = default_data()
    data["office"]["IV"] = []
    data["street"]["I"].append(data["street"]["I"][0])
    data["causes"]["sensor"].append("传感器 sensor")
    msg = load_error(tmp_path, data)
    assert "3 problem(s)" in msg
    assert "zone kind 'office', level IV blue: no measures" in msg
    assert "zone kind 'street', level I red, item" in msg and "listed twice" in msg
    assert "cause 'sensor', item 4" in msg


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(MeasuresError, match=r"(?s)nope\.toml.*cannot read the file"):
        load_measures(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[plaza\nIV = 1\n", encoding="utf-8")
    with pytest.raises(MeasuresError, match=r"(?s)bad\.toml.*not valid TOML"):
        load_measures(bad)


def test_loaded_measures_are_frozen(measures: Measures) -> None:
    with pytest.raises(AttributeError):
        measures.plaza = measures.park  # type: ignore[misc]
    assert msgspec.structs.asdict(measures)["plaza"] == measures.plaza


# ---- diversion targets -----------------------------------------------------------------------------------


def state(
    site: Site, zone_id: str, occupancy: float, *, level: Level = Level.NORMAL, healthy: bool = True
) -> ZoneState:
    zone = site.zones[zone_id]
    return ZoneState(
        zone=zone_id,
        ts=1_700_000_000.0,
        occupancy=occupancy,
        capacity=zone.capacity,
        share=occupancy / zone.capacity,
        density=occupancy / zone.area_m2,
        inflow_per_min=0.0,
        outflow_per_min=0.0,
        arrivals_today=0,
        level=level,
        healthy=healthy,
    )


def states_of(*states: ZoneState) -> dict[str, ZoneState]:
    return {s.zone: s for s in states}


def test_diversion_picks_the_emptiest_neighbour_with_exact_spare(site: Site) -> None:
    # riverside-s05 (the tip): neighbours s04, s06, the art museum forecourt, Super Brand Mall; s03 and s07 are
    # two segments along. Default II orange share 0.8.
    states = states_of(
        state(site, "riverside-s05", 17_500, level=Level.I),
        state(site, "riverside-s04", 3_000),  # 0.8 * 9500 - 3000 = 4600
        state(site, "riverside-s06", 5_000, level=Level.IV),  # 0.8 * 10000 - 5000 = 3000
        state(site, "art-museum-forecourt", 1_000.5),  # 0.8 * 5000 - 1000.5 = 2999.5 -> 2999
        state(site, "super-brand-mall", 10_000),  # 0.8 * 30000 - 10000 = 14000
        state(site, "riverside-s03", 2_000.5),  # 0.8 * 8000 - 2000.5 = 4399.5 -> 4399
        state(site, "riverside-s07", 0),  # 0.8 * 7000 = 5600
    )
    got = diversion_targets(site, "riverside-s05", states, limit=10)
    assert [(d.zone, d.spare) for d in got] == [
        ("super-brand-mall", 14_000),
        ("riverside-s07", 5_600),
        ("riverside-s04", 4_600),
        ("riverside-s03", 4_399),
        ("riverside-s06", 3_000),
        ("art-museum-forecourt", 2_999),
    ]
    assert got[0].name == site.zones["super-brand-mall"].name
    assert got[0].share == pytest.approx(10_000 / 30_000)
    # default limit 3: the best three
    assert [d.zone for d in diversion_targets(site, "riverside-s05", states)] == [
        "super-brand-mall",
        "riverside-s07",
        "riverside-s04",
    ]
    assert [d.zone for d in diversion_targets(site, "riverside-s05", states, limit=1)] == ["super-brand-mall"]
    assert diversion_targets(site, "riverside-s05", states, limit=0) == []


def calm_around_s05(site: Site) -> dict[str, ZoneState]:
    zones = ["riverside-s04", "riverside-s06", "art-museum-forecourt", "super-brand-mall"]
    return states_of(state(site, "riverside-s05", 17_500, level=Level.I), *(state(site, z, 500) for z in zones))


@pytest.mark.parametrize(
    ("case", "occupancy", "level", "healthy"),
    [
        ("full", 4_500, Level.II, True),
        ("yellow, room left", 3_600, Level.III, True),  # 4000 - 3600 = 400 spare, but already yellow
        ("past orange share, level not raised yet", 4_100, Level.NORMAL, True),
        ("exactly at orange share", 4_000, Level.II, True),
        ("unhealthy, looks empty", 100, Level.NORMAL, False),
        ("not reported", None, Level.NORMAL, True),
    ],
)
def test_diversion_excludes_a_zone_without_known_room(
    site: Site, case: str, occupancy: float | None, level: Level, healthy: bool
) -> None:
    states = calm_around_s05(site)
    assert "art-museum-forecourt" in [d.zone for d in diversion_targets(site, "riverside-s05", states, limit=10)]
    if occupancy is None:
        del states["art-museum-forecourt"]
    else:
        states["art-museum-forecourt"] = state(site, "art-museum-forecourt", occupancy, level=level, healthy=healthy)
    got = [d.zone for d in diversion_targets(site, "riverside-s05", states, limit=10)]
    assert "art-museum-forecourt" not in got, case
    assert got == ["super-brand-mall", "riverside-s06", "riverside-s04"]  # the others are untouched


def test_diversion_of_a_zone_with_one_spare_person(site: Site) -> None:
    states = calm_around_s05(site)
    states["art-museum-forecourt"] = state(site, "art-museum-forecourt", 3_999)  # 4000 - 3999 = 1
    got = diversion_targets(site, "riverside-s05", states, limit=10)
    assert [(d.zone, d.spare) for d in got][-1] == ("art-museum-forecourt", 1)


def test_diversion_two_segments_away_only_through_a_passable_segment(site: Site) -> None:
    base = [state(site, "riverside-s03", 7_900, level=Level.I), state(site, "riverside-s05", 1_000)]
    # s04 between is orange: nobody is walked through it to s05
    blocked = states_of(*base, state(site, "riverside-s04", 7_700, level=Level.II))
    assert "riverside-s05" not in [d.zone for d in diversion_targets(site, "riverside-s03", blocked, limit=10)]
    # s04 unknown: neither is it offered, nor is s05 reached through it
    assert "riverside-s05" not in [d.zone for d in diversion_targets(site, "riverside-s03", states_of(*base))]
    # s04 calm: s05 is offered, at distance 2
    calm = states_of(*base, state(site, "riverside-s04", 1_000))
    assert [d.zone for d in diversion_targets(site, "riverside-s03", calm, limit=10)] == [
        "riverside-s05",  # 14400 - 1000 = 13400
        "riverside-s04",  # 7600 - 1000 = 6600
    ]


def test_diversion_ties_go_to_the_nearer_zone(site: Site) -> None:
    states = states_of(
        state(site, "riverside-s04", 3_600),  # 7600 - 3600 = 4000, a neighbour
        state(site, "riverside-s03", 2_400),  # 6400 - 2400 = 4000, two along
        state(site, "riverside-s07", 1_600),  # 5600 - 1600 = 4000, two along
        state(site, "riverside-s06", 4_000),  # 8000 - 4000 = 4000, a neighbour
    )
    got = diversion_targets(site, "riverside-s05", states, limit=10)
    assert [(d.zone, d.spare) for d in got] == [
        ("riverside-s04", 4_000),
        ("riverside-s06", 4_000),
        ("riverside-s03", 4_000),
        ("riverside-s07", 4_000),
    ]


def test_diversion_at_the_ends_of_the_river(site: Site) -> None:
    states = {z.id: state(site, z.id, 0) for z in site.zones.values()}
    first = {d.zone for d in diversion_targets(site, "riverside-s01", states, limit=10)}
    assert first == {"riverside-s02", "riverside-s03", "binjiang-residential"}
    last = {d.zone for d in diversion_targets(site, "riverside-s10", states, limit=10)}
    assert last == {"riverside-s09", "riverside-s08"}


def test_diversion_uses_each_targets_own_orange_share(site: Site) -> None:
    # Metro exits turn orange at 70% (site file override); Fucheng Road at the default 80%.
    assert site.thresholds_for("metro-exit-3").share_for(Level.II) == 0.7
    states = states_of(state(site, "metro-exit-3", 100), state(site, "jin-mao-tower", 14_000))
    got = diversion_targets(site, "fucheng-road", states)
    assert [(d.zone, d.spare) for d in got] == [("metro-exit-3", 250)]  # 0.7 * 500 - 100; the tower is full


def test_diversion_of_an_unknown_zone_or_bad_limit(site: Site) -> None:
    with pytest.raises(ValueError, match="no zone 'riverside-s99'"):
        diversion_targets(site, "riverside-s99", {})
    with pytest.raises(ValueError, match="limit must be >= 0"):
        diversion_targets(site, "riverside-s01", {}, limit=-1)


def test_diversion_leaves_the_states_alone(site: Site) -> None:
    states = states_of(state(site, "riverside-s02", 10), state(site, "riverside-s03", 20))
    before = msgspec.json.encode(states)
    diversion_targets(site, "riverside-s01", states)
    assert msgspec.json.encode(states) == before


# ---- docs and command line -------------------------------------------------------------------------------


def test_docs_table_is_in_sync_with_the_toml(measures: Measures) -> None:
    docs = (ROOT / "docs" / "measures.md").read_text(encoding="utf-8")
    assert docs == render_markdown(measures), f"docs/measures.md is out of date: run `{REGENERATE}`"


def test_docs_table_lists_every_measure(measures: Measures) -> None:
    docs = render_markdown(measures)
    for kind in KINDS:
        assert f"(`{kind}`)" in docs
        for level in GRADED:
            for line in measures.for_kind(kind).at(level):
                assert line in docs


def test_command_line_prints_the_markdown_and_reports_bad_files(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["--markdown"], out, err) == 0
    assert out.getvalue() == render_markdown(load_measures())
    bad = tmp_path / "measures.toml"
    bad.write_text("[plaza]\nIV = []\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--file", str(bad)], out, err) == 1
    assert str(bad) in err.getvalue()
    assert "zone kind 'riverside_segment' is missing" in err.getvalue()
    assert "zone kind 'plaza': level III yellow is missing" in err.getvalue()
    out = io.StringIO()
    assert main([], out, err) == 0 and out.getvalue().startswith("ok: ")
