"""Origin and bearer-token checks, edge cases the socket tests do not reach."""

from __future__ import annotations

import pytest

from dashboard.guard import bearer_ok, normalise_origin, origin_allowed


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("HTTP://Wall.Local:80/", "http://wall.local"),
        ("https://wall.local:443", "https://wall.local"),
        ("http://wall.local:8000", "http://wall.local:8000"),
        ("http://wall.local:notaport", ""),
    ],
)
def test_normalise_origin(origin: str, expected: str) -> None:
    assert normalise_origin(origin) == expected


@pytest.mark.parametrize(
    ("headers", "allowed", "ok"),
    [
        ({"host": "wall.local:8000"}, None, True),  # no Origin: not a browser, cannot be cross-site
        ({"host": "wall.local:8000", "origin": "http://wall.local:8000"}, None, True),
        ({"host": "wall.local", "origin": "http://wall.local:80"}, None, True),
        ({"host": "wall.local:8000", "origin": "http://wall.local:9000"}, None, False),
        ({"host": "wall.local:8000", "origin": "null"}, None, False),  # sandboxed or file:// page
        ({"origin": "http://wall.local"}, None, False),  # no Host to compare with
        ({"host": "x", "origin": "https://ops.example.cn"}, ["https://ops.example.cn/"], True),
        ({"host": "x", "origin": "https://evil.example.cn"}, ["https://ops.example.cn"], False),
    ],
)
def test_origin_allowed(headers: dict[str, str], allowed: list[str] | None, ok: bool) -> None:
    assert origin_allowed(headers, allowed) is ok


def test_bearer() -> None:
    assert bearer_ok(None, None) and bearer_ok("anything", None)
    assert bearer_ok("Bearer t0k", "t0k") and bearer_ok("bearer t0k", "t0k")
    assert not bearer_ok(None, "t0k") and not bearer_ok("Basic t0k", "t0k") and not bearer_ok("Bearer", "t0k")
    assert not bearer_ok("Bearer t0kX", "t0k")
