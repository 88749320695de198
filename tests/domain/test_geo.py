"""Site frame → WGS84: scale against published degree lengths, closed rings, the default site inside Lujiazui."""

from __future__ import annotations

import doctest
import math

import msgspec
import pytest

import domain.geo
from domain.geo import centroid_wgs84, polygon_wgs84, to_wgs84
from domain.loader import load_site
from domain.site import Site

# Lujiazui subdistrict, generously: the Huangpu bend on the west and north, Pudong Avenue's blocks to the east.
LAT_RANGE = (31.22, 31.26)
LON_RANGE = (121.48, 121.53)


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site()


def _with(site: Site, **info: object) -> Site:
    return Site(msgspec.structs.replace(site.file, site=msgspec.structs.replace(site.info, **info)), site.path)


def test_origin_maps_to_the_site_origin(site: Site) -> None:
    assert to_wgs84(site, 0.0, 0.0) == site.info.origin


def test_a_kilometre_north_is_about_0_008993_degrees(site: Site) -> None:
    lat0, lon0 = site.info.origin
    lat, lon = to_wgs84(site, 0.0, 1000.0)
    assert lon == lon0
    # 0.008993° is 1 km on a sphere of the mean Earth radius; the WGS84 meridian is 0.3% shorter per degree here.
    assert lat - lat0 == pytest.approx(0.008993, rel=0.005)
    assert lat - lat0 == pytest.approx(0.0090193, abs=1e-7)


def test_degree_lengths_match_the_published_wgs84_table(site: Site) -> None:
    # Length of a degree at 30° latitude on WGS84: 110,852 m of latitude, 96,486 m of longitude.
    at30 = _with(site, origin=(30.0, 121.5))
    lat, _ = to_wgs84(at30, 0.0, 1000.0)
    _, lon = to_wgs84(at30, 1000.0, 0.0)
    assert (lat - 30.0) * 110_852 == pytest.approx(1000.0, abs=0.05)
    assert (lon - 121.5) * 96_486 == pytest.approx(1000.0, abs=0.05)


@pytest.mark.parametrize("lat0", [0.0, 31.2397, 60.0])
def test_east_is_scaled_by_the_cosine_of_latitude(site: Site, lat0: float) -> None:
    here = _with(site, origin=(lat0, 121.5))
    dlat = to_wgs84(here, 0.0, 1000.0)[0] - lat0
    dlon = to_wgs84(here, 1000.0, 0.0)[1] - 121.5
    assert dlon * math.cos(math.radians(lat0)) == pytest.approx(dlat, rel=0.01)  # ellipsoid: within 1%
    assert to_wgs84(here, 1000.0, 0.0)[0] == lat0
    assert to_wgs84(here, -1000.0, 0.0)[1] - 121.5 == pytest.approx(-dlon)


def test_every_zone_is_a_closed_ring_inside_lujiazui(site: Site) -> None:
    assert len(site.zones) > 30
    for zone in site.zones.values():
        ring = polygon_wgs84(site, zone.id)
        assert ring[0] == ring[-1], zone.id
        assert len(ring) >= 4, zone.id
        assert len(ring) == len(zone.polygon) + 1, zone.id  # the site file lists each vertex once
        for lat, lon in ring:
            assert LAT_RANGE[0] <= lat <= LAT_RANGE[1], (zone.id, lat)
            assert LON_RANGE[0] <= lon <= LON_RANGE[1], (zone.id, lon)
        c_lat, c_lon = centroid_wgs84(site, zone.id)
        assert min(p[0] for p in ring) <= c_lat <= max(p[0] for p in ring), zone.id
        assert min(p[1] for p in ring) <= c_lon <= max(p[1] for p in ring), zone.id


def test_ring_follows_the_zone_outline(site: Site) -> None:
    zone = site.zones["pearl-tower-plaza"]
    ring = polygon_wgs84(site, zone.id)
    assert ring[:-1] == [to_wgs84(site, x, y) for x, y in zone.polygon]


def test_a_ring_already_closed_in_the_file_is_not_closed_twice(site: Site) -> None:
    zone = site.zones["pearl-tower-plaza"]
    closed = msgspec.structs.replace(zone, polygon=(*zone.polygon, zone.polygon[0]))
    zones = tuple(closed if z.id == zone.id else z for z in site.file.zones)
    other = Site(msgspec.structs.replace(site.file, zones=zones), site.path)
    assert polygon_wgs84(other, zone.id) == polygon_wgs84(site, zone.id)


def test_centroid_of_a_rectangle_is_its_centre(site: Site) -> None:
    # pearl-tower-plaza is the rectangle x 340..620, y 1660..1940.
    assert centroid_wgs84(site, "pearl-tower-plaza") == pytest.approx(to_wgs84(site, 480.0, 1800.0), abs=1e-12)


def test_centroid_of_an_l_shape_is_area_weighted(site: Site) -> None:
    # riverside-s05: a strip x 0..40, y 1400..2000 (24,000 m², centre (20, 1700)) plus an arm x 40..300,
    # y 1960..2000 (10,400 m², centre (170, 1980)); the vertex mean (113, 1820) would be wrong.
    cx = (20 * 24_000 + 170 * 10_400) / 34_400
    cy = (1700 * 24_000 + 1980 * 10_400) / 34_400
    assert centroid_wgs84(site, "riverside-s05") == pytest.approx(to_wgs84(site, cx, cy), abs=1e-9)


def test_unknown_zone_names_the_known_ones(site: Site) -> None:
    with pytest.raises(KeyError, match=r"'nowhere' is not in the site file .*known zones: .*pearl-tower-plaza"):
        polygon_wgs84(site, "nowhere")
    with pytest.raises(KeyError, match="nowhere"):
        centroid_wgs84(site, "nowhere")


def test_a_swapped_origin_says_which_key_to_fix(site: Site) -> None:
    swapped = _with(site, origin=(121.4998, 31.2397))
    with pytest.raises(ValueError, match=r"\[site\] origin .*latitude first"):
        to_wgs84(swapped, 0.0, 0.0)


def test_non_finite_coordinates_are_refused(site: Site) -> None:
    with pytest.raises(ValueError, match="must be finite"):
        to_wgs84(site, math.nan, 0.0)


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(domain.geo)
    assert result.attempted > 0
    assert result.failed == 0
