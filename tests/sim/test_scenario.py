from __future__ import annotations

from pathlib import Path

import pytest

from domain.loader import load_site
from domain.site import Site
from sim.scenario import ScenarioError, load_scenario, parse_scenario, shipped_scenarios
from sim.stream import Simulation
from tests.sim.helpers import scenario

HEAD = """name = "x"
description = "x"
day = 2026-06-17
day_type = "weekday"
start = 18:00:00
end = 19:00:00
"""


def test_shipped_scenarios_load() -> None:
    assert {"weekday", "holiday", "nye", "faults"} <= set(shipped_scenarios())
    for name in shipped_scenarios():
        assert load_scenario(name).name == name


def test_unknown_top_level_key_names_file_and_field(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(HEAD + "speed = 3\n")
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert str(p) in str(e.value) and "speed" in str(e.value)


def test_unknown_key_in_a_surge_names_the_entry(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(
        HEAD + "[[surges]]\nkind = 'plaza'\nstart = 18:10:00\npeak = 18:20:00\nend = 18:30:00\n"
        "multiplier = 2\n[[surges]]\nall = true\nstart = 18:10:00\npeak = 18:20:00\nend = 18:30:00\n"
        "multiplier = 2\nmultiplyer = 3\n"
    )
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    assert "surges entry 2" in str(e.value) and "multiplyer" in str(e.value) and "bad.toml" in str(e.value)


def test_wrong_type_and_bad_fault_type_are_named() -> None:
    with pytest.raises(ScenarioError, match=r"field step_s"):
        parse_scenario(HEAD + 'step_s = "ten"\n', "a.toml")
    with pytest.raises(ScenarioError, match=r"faults entry 1, field type"):
        parse_scenario(
            HEAD + "[[faults]]\nsensor='s'\ntype='gremlins'\nstart=18:10:00\nend=18:20:00\n", "a.toml"
        )


def test_semantic_problems_are_all_listed() -> None:
    body = (
        "[[surges]]\nstart = 18:30:00\npeak = 18:20:00\nend = 18:40:00\n"
        "[[faults]]\nsensor = 's'\ntype = 'dropout'\nstart = 18:10:00\nend = 18:05:00\n"
        "params = { delay_s = 5 }\n"
    )
    with pytest.raises(ScenarioError) as e:
        parse_scenario(HEAD + body, "b.toml")
    text = str(e.value)
    assert "exactly one of zones, kind or all" in text
    assert "exactly one of multiplier or peak_share" in text
    assert "start <= peak < end" in text
    assert "needs start < end" in text
    assert "['delay_s'] do not apply to a dropout fault" in text


def test_references_are_checked_against_the_site(mini_site: Site) -> None:
    sc = scenario(
        "[[surges]]\nzones = ['nowhere']\nstart = 18:10:00\npeak = 18:20:00\nend = 18:30:00\nmultiplier = 2\n"
        "[[faults]]\nsensor = 'ghost'\ntype = 'dropout'\nstart = 18:10:00\nend = 18:20:00\n"
        "[[faults]]\npick = { kind = 'area' }\ntype = 'stuck'\nstart = 18:10:00\nend = 18:20:00\n"
    )
    with pytest.raises(ScenarioError) as e:
        Simulation(mini_site, sc)
    text = str(e.value)
    assert "no zone 'nowhere'" in text and "no sensor 'ghost'" in text and "no area sensor" in text


def test_unknown_day_type_lists_the_site_day_types(mini_site: Site) -> None:
    sc = parse_scenario(HEAD.replace('"weekday"', '"carnival"'), "c.toml")
    with pytest.raises(ScenarioError, match=r"c.toml.*\n.*'carnival' is not a day type.*holiday"):
        Simulation(mini_site, sc)


def test_missing_file_lists_shipped_scenarios() -> None:
    with pytest.raises(ScenarioError, match=r"shipped scenarios: .*nye"):
        load_scenario("no-such-scenario")


def test_times_past_midnight_fall_on_the_next_day() -> None:
    from zoneinfo import ZoneInfo

    sc = load_scenario("nye")
    t0, t1 = sc.window(ZoneInfo("Asia/Shanghai"))
    assert t1 - t0 == 7 * 3600


def test_nye_pushes_riverside_segments_of_lujiazui_over_capacity() -> None:
    """The shipped NYE scenario on the real site: at least three segments above capacity around midnight."""
    site = load_site()
    sim = Simulation(site, load_scenario("nye"), start="23:00", duration_s=75 * 60)
    for _ in sim.messages():
        pass
    peaks = sim.summary()["max_occupancy_by_zone"]
    over = [z.id for z in site.riverside() if peaks[z.id] > z.capacity]
    assert len(over) >= 3, peaks
