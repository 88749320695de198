"""The strict site loader on bad input: every error names the file, the item and the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from domain.loader import SiteError, default_site_path, load_site, parse_site
from domain.site import SiteFile

FIXTURE = Path(__file__).parent.parent / "fixtures" / "mini_site.toml"
TEXT = FIXTURE.read_text(encoding="utf-8")
NAME = "bad_site.toml"

# A second grid with its own micro-grid, for cross-grid mistakes.
SECOND_GRID = """
[[grids]]
id = "inland"
name_zh = "内陆"
name_en = "Inland"
kind = "residential"

[[micro_grids]]
id = "in-01"
grid = "inland"
name_zh = "内陆一"
name_en = "Inland 1"
"""


def mutate(old: str, new: str, text: str = TEXT) -> str:
    assert text.count(old) == 1, f"fixture changed: {old!r} no longer occurs exactly once"
    return text.replace(old, new)


def problems_of(text: str) -> str:
    with pytest.raises(SiteError) as info:
        parse_site(text, NAME)
    err = info.value
    assert err.path == NAME
    assert str(err).startswith(f"{NAME}: ")
    assert err.problems, "a SiteError lists its problems"
    return str(err)


def test_fixture_is_valid() -> None:
    site = parse_site(TEXT, NAME)
    assert set(site.zones) == {"seg-1", "seg-2", "plaza"}
    assert site.path == NAME


def test_bytes_are_accepted() -> None:
    assert parse_site(TEXT.encode("utf-8"), NAME).info.id == "mini"


def test_unknown_key_names_file_zone_and_field() -> None:
    msg = problems_of(mutate("area_m2 = 1000\n", "area_m2 = 1000\nareaa_m2 = 1000\n"))
    assert "zones 'plaza'" in msg and "areaa_m2" in msg and "unknown field" in msg


def test_unknown_key_in_a_sensor() -> None:
    msg = problems_of(mutate('id = "plaza-cam"\n', 'id = "plaza-cam"\nfps = 25\n'))
    assert "sensors 'plaza-cam'" in msg and "fps" in msg


def test_unknown_section() -> None:
    msg = problems_of(TEXT + "\n[cameras]\nfoo = 1\n")
    assert "cameras" in msg and "unknown field" in msg


def test_missing_field_names_zone_and_field() -> None:
    msg = problems_of(mutate("dwell_min = 20\n", ""))
    assert "zones 'plaza'" in msg and "dwell_min" in msg and "missing" in msg


def test_wrong_type_names_zone_and_field() -> None:
    msg = problems_of(mutate("area_m2 = 1000\n", 'area_m2 = "large"\n'))
    assert "zones 'plaza'" in msg and "field area_m2" in msg


def test_unknown_kind_names_zone_and_field() -> None:
    msg = problems_of(mutate('kind = "plaza"\n', 'kind = "stadium"\n'))
    assert "zones 'plaza'" in msg and "field kind" in msg


def test_dangling_neighbour() -> None:
    msg = problems_of(mutate('neighbours = ["seg-1"]\n\n[[sensors]]', 'neighbours = ["seg-1", "seg-9"]\n\n[[sensors]]'))
    assert "zones 'plaza', field neighbours: no zone 'seg-9'" in msg


def test_zone_cannot_neighbour_itself() -> None:
    msg = problems_of(mutate('neighbours = ["seg-1"]\n\n[[sensors]]', 'neighbours = ["plaza"]\n\n[[sensors]]'))
    assert "zones 'plaza', field neighbours" in msg and "itself" in msg


def test_dangling_sensor_zone() -> None:
    msg = problems_of(mutate('id = "plaza-cam"\nzone = "plaza"', 'id = "plaza-cam"\nzone = "plaza-2"'))
    assert "sensors 'plaza-cam', field zone: no zone 'plaza-2'" in msg


def test_negative_area() -> None:
    msg = problems_of(mutate("area_m2 = 1000\n", "area_m2 = -1000\n"))
    assert "zones 'plaza', field area_m2" in msg and "positive" in msg


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("capacity = 1500\n", "capacity = 0\n", "capacity"),
        ("dwell_min = 20\n", "dwell_min = 0\n", "dwell_min"),
        ("visit_share = 0.3\ndwell_min = 20", "visit_share = 1.3\ndwell_min = 20", "visit_share"),
        ('shape = "leisure"\npolygon = [[0, 20]', 'shape = "festival"\npolygon = [[0, 20]', "shape"),
        ("polygon = [[0, 20], [100, 20], [100, 80], [0, 80]]", "polygon = [[0, 20], [100, 20]]", "polygon"),
    ],
)
def test_physical_nonsense_names_zone_and_field(old: str, new: str, field: str) -> None:
    msg = problems_of(mutate(old, new))
    assert f"zones 'plaza', field {field}" in msg


def test_riverside_segment_needs_its_order() -> None:
    msg = problems_of(mutate("segment = 2\n", ""))
    assert "zones 'seg-2', field segment" in msg


def test_micro_grid_in_wrong_grid() -> None:
    text = mutate('micro_grid = "rs-02"\n', 'micro_grid = "in-01"\n', TEXT + SECOND_GRID)
    msg = problems_of(text)
    assert "zones 'plaza', field micro_grid" in msg and "'in-01' belongs to grid 'inland'" in msg


def test_micro_grid_of_unknown_grid() -> None:
    msg = problems_of(mutate('id = "rs-02"\ngrid = "riverside"', 'id = "rs-02"\ngrid = "hinterland"'))
    assert "micro_grids 'rs-02', field grid: no grid 'hinterland'" in msg


def test_duplicate_zone_ids() -> None:
    msg = problems_of(mutate('id = "seg-2"\nname_zh', 'id = "seg-1"\nname_zh'))
    assert "zones 'seg-1': id used twice" in msg


def test_duplicate_sensor_ids() -> None:
    msg = problems_of(mutate('id = "seg2-gate"', 'id = "seg1-west"'))
    assert "sensors 'seg1-west': id used twice" in msg


def test_shares_not_adding_to_one() -> None:
    msg = problems_of(mutate("visit_share = 0.3\ndwell_min = 20", "visit_share = 0.2\ndwell_min = 20"))
    assert "visit_share must add up to 1.0" in msg and "0.900000" in msg


def test_thresholds_must_rise() -> None:
    msg = problems_of(mutate("share = [0.6, 0.7, 0.8, 0.95]", "share = [0.6, 0.9, 0.8, 0.95]"))
    assert "thresholds, field share" in msg


def test_day_factor_needs_weekday_and_holiday() -> None:
    msg = problems_of(
        mutate("day_factor = { weekday = 0.6, holiday = 1.0, nye = 1.3 }", "day_factor = { weekday = 0.6 }")
    )
    assert "day_factor: missing 'holiday'" in msg


def test_shape_hours_must_rise() -> None:
    msg = problems_of(mutate("weekday = [[0, 0.1], [10, 1.0]", "weekday = [[0, 0.1], [30, 1.0]"))
    assert "profile.shapes 'leisure', field weekday" in msg


def test_every_problem_is_listed_at_once() -> None:
    text = mutate("area_m2 = 1000\n", "area_m2 = -1000\n")
    text = mutate('id = "plaza-cam"\nzone = "plaza"', 'id = "plaza-cam"\nzone = "nowhere"', text)
    with pytest.raises(SiteError) as info:
        parse_site(text, NAME)
    assert len(info.value.problems) == 2
    assert "2 problem(s)" in str(info.value)


@pytest.mark.parametrize("junk", ["this is not toml", "[site\nid = 1", 'zones = [[ "a" ', "\x00\x01"])
def test_non_toml_text(junk: str) -> None:
    msg = problems_of(junk)
    assert "not valid TOML" in msg


def test_valid_toml_but_not_a_site() -> None:
    msg = problems_of('title = "a blog"\n')
    assert "title" in msg or "site" in msg


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SiteError) as info:
        load_site(missing)
    assert str(missing) in str(info.value) and "cannot read" in str(info.value)


def test_load_site_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "copy.toml"
    path.write_text(TEXT, encoding="utf-8")
    assert load_site(path).path == str(path)


def test_non_utf8_bytes_name_the_file() -> None:
    with pytest.raises(SiteError, match=r"(?s)bad\.toml.*not UTF-8"):
        parse_site(b"[site]\nid = '\xff\xfe'\n", "bad.toml")


def test_one_sided_neighbour_is_reported() -> None:
    text = FIXTURE.read_text().replace('neighbours = ["seg-1"]\nsegment = 2', "segment = 2")
    with pytest.raises(SiteError, match=r"zones 'seg-1', field neighbours: 'seg-2' does not list 'seg-1' back"):
        parse_site(text, "one-sided.toml")


def test_the_site_is_what_the_file_says_after_its_objects_are_made_again() -> None:
    """parse_site rebuilds the kept objects once the parse is gone (compact in memory) and shares the sensors'
    repeated values: the result equals the file converted directly, field for field."""
    path = default_site_path()
    direct = msgspec.convert(tomllib.loads(path.read_text(encoding="utf-8")), SiteFile, strict=True)
    site = load_site(path)
    assert site.file == direct
    assert [type(s.interval_s) for s in site.file.sensors] == [float] * len(direct.sensors)
    zone_ids = {z.id: z.id for z in site.zones.values()}
    assert all(s.zone is zone_ids[s.zone] for s in site.sensors.values())  # one string per zone, not per sensor
    intervals = {s.interval_s: s.interval_s for s in site.sensors.values()}
    assert all(s.interval_s is intervals[s.interval_s] for s in site.sensors.values())
    assert list(site.index) == list(site.sensors) and sorted(site.index.values()) == list(range(len(site.sensors)))


def test_an_integer_beyond_64_bits_is_named_not_a_crash() -> None:
    """tomllib reads any integer; the site's compact copy (msgpack) holds 64 bits: 2**64 raised OverflowError."""
    msg = problems_of(mutate("capacity = 1500\n", "capacity = 18446744073709551616\n"))
    assert "capacity: 18446744073709551616 is out of range" in msg
