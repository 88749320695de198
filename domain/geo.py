"""Site coordinates to WGS84: the zone polygons are drawn in a local metric frame, CAP areas and maps need degrees.

The site file gives each zone's polygon in metres, x east and y north of a local origin (`Zone.polygon`), and
`SiteInfo.origin` is the WGS84 (latitude, longitude) of that origin. A district is a few kilometres across, so a
local tangent plane is enough: one metre north is one metre along the meridian at the origin, one metre east is
one metre along the parallel at the point's own latitude, both on the WGS84 ellipsoid (its meridional and
prime-vertical radii of curvature, not a sphere's mean radius, which is 0.3% off at Shanghai's latitude).

Error bound: the plane ignores the Earth's curvature over the distance d from the origin. The largest term is the
convergence of meridians, about d_east * d_north * tan(lat) / R: at 31° N and 3 km by 3 km that is 0.9 m; the
change of the radii over the district and the plane-vs-sphere distance (d³ / R²) are centimetres. So every point
within 3 km of the origin is placed within about 1 m, well inside the accuracy of the schematic polygons.

>>> from domain.loader import load_site
>>> site = load_site()
>>> lat, lon = to_wgs84(site, 0.0, 1000.0)
>>> round(lat - site.info.origin[0], 6), round(lon - site.info.origin[1], 6)
(0.009019, 0.0)
"""

from __future__ import annotations

import math

from domain.site import Site, Zone

# WGS84 ellipsoid (NIMA TR8350.2): semi-major axis and first eccentricity squared.
WGS84_A = 6_378_137.0
WGS84_E2 = 6.694_379_990_14e-3


def _origin(site: Site) -> tuple[float, float]:
    lat0, lon0 = site.info.origin
    # The plane is meaningless near a pole; a swapped (lon, lat) pair usually fails the latitude check.
    if not (math.isfinite(lat0) and math.isfinite(lon0) and -85.0 <= lat0 <= 85.0 and -180.0 <= lon0 <= 180.0):
        raise ValueError(
            f"{site.path}: [site] origin = {list(site.info.origin)} is not a WGS84 (latitude, longitude) pair: "
            "give the latitude first (between -85 and 85) and the longitude second (between -180 and 180)"
        )
    return lat0, lon0


def _radii(lat_deg: float) -> tuple[float, float]:
    """Meridional (north-south) and prime-vertical (east-west) radii of curvature at a latitude, in metres."""
    s2 = math.sin(math.radians(lat_deg)) ** 2
    w = math.sqrt(1.0 - WGS84_E2 * s2)
    return WGS84_A * (1.0 - WGS84_E2) / w**3, WGS84_A / w


def to_wgs84(site: Site, x: float, y: float) -> tuple[float, float]:
    """(latitude, longitude) in degrees of the point x metres east and y metres north of the site's origin."""
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"cannot place the point ({x}, {y}) of site {site.info.id!r}: coordinates must be finite")
    lat0, lon0 = _origin(site)
    m0, _ = _radii(lat0)
    lat = lat0 + math.degrees(y / m0)
    # East distances are measured along the parallel the point is on, so the scale uses its own latitude.
    _, n = _radii(lat)
    lon = lon0 + math.degrees(x / (n * math.cos(math.radians(lat))))
    return lat, lon


def _zone(site: Site, zone_id: str) -> Zone:
    zone = site.zones.get(zone_id)
    if zone is None:
        known = ", ".join(sorted(site.zones)) or "none"
        raise KeyError(f"zone {zone_id!r} is not in the site file {site.path}; known zones: {known}")
    return zone


def polygon_wgs84(site: Site, zone_id: str) -> list[tuple[float, float]]:
    """The zone's outline as a closed ring of (latitude, longitude): first point repeated last, at least 4 points.

    That is the shape CAP 1.2 requires of `area/polygon`; the site file lists each vertex once.
    """
    ring = list(_zone(site, zone_id).polygon)
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    if len(ring) < 4:
        raise ValueError(
            f"{site.path}: zone {zone_id!r}, field polygon: needs at least 3 distinct points to make an area"
        )
    return [to_wgs84(site, x, y) for x, y in ring]


def centroid_wgs84(site: Site, zone_id: str) -> tuple[float, float]:
    """(latitude, longitude) of the zone's area centroid (the vertices' mean if the polygon has no area)."""
    pts = list(_zone(site, zone_id).polygon)
    area2 = cx = cy = 0.0
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
        cross = x1 * y2 - x2 * y1
        area2 += cross
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    if abs(area2) < 1e-9:
        return to_wgs84(site, sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))
    return to_wgs84(site, cx / (3.0 * area2), cy / (3.0 * area2))
