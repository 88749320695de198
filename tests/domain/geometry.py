"""Small polygon helpers for the site tests (shapely is not a dependency)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Polygon = tuple[tuple[float, float], ...]


def area(poly: Polygon) -> float:
    """Shoelace area of a simple polygon, whatever its winding."""
    xs = np.array([p[0] for p in poly])
    ys = np.array([p[1] for p in poly])
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2.0)


def contains(
    poly: Polygon, px: npt.NDArray[np.float64], py: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Even-odd ray casting for many points at once."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(poly)
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        if y1 == y2:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y1 > py) != (y2 > py)
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < x_at)
    return inside


def _orient(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def edges_cross(p: Polygon, q: Polygon) -> bool:
    """True if an edge of p properly crosses an edge of q (touching or sharing a border is allowed)."""
    for i in range(len(p)):
        a, b = p[i], p[(i + 1) % len(p)]
        for j in range(len(q)):
            c, d = q[j], q[(j + 1) % len(q)]
            d1, d2 = _orient(c, d, a), _orient(c, d, b)
            d3, d4 = _orient(a, b, c), _orient(a, b, d)
            if d1 * d2 < 0 and d3 * d4 < 0:
                return True
    return False


def is_simple(poly: Polygon) -> bool:
    """No two non-adjacent edges cross."""
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            c, d = poly[j], poly[(j + 1) % n]
            if _orient(c, d, a) * _orient(c, d, b) < 0 and _orient(a, b, c) * _orient(a, b, d) < 0:
                return False
    return True
