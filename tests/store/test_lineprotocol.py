from __future__ import annotations

import math

import pytest

from domain.levels import Level
from domain.site import Site
from domain.values import Reading, ZoneState
from store.base import StoreStats
from store.lineprotocol import (
    Encoder,
    escape_key,
    escape_measurement,
    escape_string,
    format_point,
    format_value,
    tag_prefix,
    ts_ns,
)
from tests.store.conftest import T0, flow, state


def test_escaping_of_names_tags_and_strings() -> None:
    assert escape_measurement("zone state,x") == "zone\\ state\\,x"
    assert escape_measurement("a=b") == "a=b"  # '=' needs no escape in a measurement
    assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_key("陆家嘴") == "陆家嘴"
    assert escape_string('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert escape_string("two\nlines") == '"two\\nlines"'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "trailing\\"])
def test_names_that_line_protocol_cannot_carry_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        escape_key(bad)
    with pytest.raises(ValueError):
        escape_measurement(bad)


def test_field_value_types() -> None:
    assert format_value(True) == "true"
    assert format_value(False) == "false"
    assert format_value(3) == "3i"
    assert format_value(-7) == "-7i"
    assert format_value(3.0) == "3.0"
    assert format_value(1e-7) == "1e-07"
    assert format_value("x") == '"x"'
    assert format_value(math.nan) is None
    assert format_value(math.inf) is None
    assert format_value(-math.inf) is None
    with pytest.raises(ValueError):
        format_value(None)  # type: ignore[arg-type]


def test_point_sorts_tags_drops_empty_tags_and_skips_nan_fields() -> None:
    line, skipped = format_point(
        "m", {"zone": "b", "grid": "a", "kind": ""}, {"x": 1.5, "bad": math.nan, "n": 2}, 42
    )
    assert line == "m,grid=a,zone=b x=1.5,n=2i 42"
    assert skipped == 1
    assert format_point("m", {}, {"only": math.inf}, 1) == (None, 1)
    assert tag_prefix("m", {"z": "1 2"}) == "m,z=1\\ 2"


def test_timestamps_are_whole_microseconds_in_ns() -> None:
    assert ts_ns(1_700_000_000.123456) == 1_700_000_000_123_456_000
    assert ts_ns(0.1) == 100_000_000
    with pytest.raises(ValueError):
        ts_ns(math.nan)


def test_zone_state_line_has_site_tags_and_typed_fields(mini_site: Site) -> None:
    enc = Encoder(StoreStats(), mini_site)
    s = state("seg-1", T0 + 0.5, 250.0, level=Level.III)
    (line,) = enc.states([s])
    assert line == (
        "zone_state,grid=riverside,kind=riverside_segment,zone=seg-1 occupancy=250.0,share=0.25,density=0.5,"
        "inflow_per_min=10.0,outflow_per_min=8.0,level=2i,healthy=true,arrivals_today=750i 1700000000500000000"
    )


def test_the_learned_normal_is_written_when_known_and_left_out_otherwise() -> None:
    stats = StoreStats()
    enc = Encoder(stats)
    known, unknown, bad = state("z", T0, expected=38.5), state("z", T0), state("z", T0, expected=math.nan)
    slow = state("z", T0, expected=12.25)
    slow.share = math.inf  # the slow path (a field to skip) writes the new fields too
    lines = enc.states([known, unknown, bad, slow])
    assert lines[0].endswith(",arrivals_today=300i,expected_inflow_per_min=38.5 1700000000000000000")
    assert lines[1].endswith(",healthy=true,arrivals_today=300i 1700000000000000000")  # None: not known yet
    assert "expected_inflow_per_min" not in lines[2]
    assert ",arrivals_today=300i,expected_inflow_per_min=12.25 " in lines[3] and "share" not in lines[3]
    assert stats.fields_skipped == 2  # the NaN normal and the inf share; an unknown normal is no fault


def test_zone_state_with_nan_skips_the_field_and_counts_it() -> None:
    stats = StoreStats()
    enc = Encoder(stats)
    s = state("z 1", T0)
    s.density = math.nan
    s.occupancy = 12  # an int where a float belongs still goes out as a float: no type conflict later
    (line,) = enc.states([s])
    assert line.startswith("zone_state,zone=z\\ 1 occupancy=12.0,share=0.1,inflow_per_min=10.0,")
    assert "density" not in line
    assert stats.fields_skipped == 1 and stats.points_invalid == 0


def test_bad_points_are_counted_with_a_reason_not_raised() -> None:
    stats = StoreStats()
    enc = Encoder(stats)
    good = state("ok", T0)
    bad_zone = state("bad\nzone", T0)
    bad_ts = state("ok", math.nan)
    lines = enc.states([good, bad_zone, bad_ts])
    assert len(lines) == 1
    assert stats.points_invalid == 2
    assert "timestamp" in stats.last_error
    nothing = Reading(sensor="d1", zone="ok", kind="density", ts=T0, seq=1, density=math.nan)
    assert enc.readings([nothing]) == []
    assert stats.points_invalid == 3 and stats.fields_skipped == 1
    assert "no finite field" in stats.last_error


def test_reading_lines_by_kind(mini_site: Site) -> None:
    enc = Encoder(StoreStats(), mini_site)
    lines = enc.readings(
        [
            flow("seg1-west", "seg-1", T0, 7, 2),
            Reading(sensor="plaza-cam", zone="plaza", kind="occupancy", ts=T0, seq=1, count=80),
            Reading(sensor="plaza-cam", zone="plaza", kind="density", ts=T0, seq=2, density=1.25),
            Reading(
                sensor="plaza-gate",
                zone="plaza",
                kind="status",
                ts=T0,
                seq=3,
                status="fault",
                detail='lens "fogged"',
            ),
        ]
    )
    assert lines == [
        "sensor_reading,grid=riverside,kind=flow,sensor=seg1-west,zone=seg-1 inflow=7i,outflow=2i "
        "1700000000000000000",
        "sensor_reading,grid=riverside,kind=occupancy,sensor=plaza-cam,zone=plaza count=80i "
        "1700000000000000000",
        "sensor_reading,grid=riverside,kind=density,sensor=plaza-cam,zone=plaza density=1.25 "
        "1700000000000000000",
        'sensor_reading,grid=riverside,kind=status,sensor=plaza-gate,zone=plaza status="fault",'
        'detail="lens \\"fogged\\"" 1700000000000000000',
    ]


def test_unhealthy_state_and_levels() -> None:
    s = ZoneState(
        zone="z",
        ts=T0,
        occupancy=0.0,
        capacity=1,
        share=0.0,
        density=0.0,
        inflow_per_min=0.0,
        outflow_per_min=0.0,
        arrivals_today=0,
        level=Level.I,
        healthy=False,
    )
    line = Encoder(StoreStats()).state_line(s)
    assert line is not None and ",level=4i,healthy=false,arrivals_today=0i " in line
