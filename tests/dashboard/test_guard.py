"""Host, Origin, query-string and bearer-token checks, edge cases the app tests do not reach."""

from __future__ import annotations

import pytest

from dashboard.guard import bearer_ok, host_allowed, host_name, normalise_origin, origin_allowed, token_in_query


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


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@pytest.mark.parametrize(
    ("headers", "allowed", "ok"),
    [
        ({"host": "127.0.0.1:8000"}, None, True),  # no Origin: not a browser, cannot be cross-site
        ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}, None, True),
        ({"host": "localhost", "origin": "http://localhost:80"}, None, True),
        ({"host": "x", "origin": "http://[::1]:8000"}, None, True),
        ({"host": "127.0.0.1:8000", "origin": "null"}, None, False),  # sandboxed or file:// page
        ({"host": "127.0.0.1:8000", "origin": "file://"}, None, False),
        # DNS rebinding: the page's own name in both Origin and Host; the Host no longer decides
        ({"host": "evil.example:8000", "origin": "http://evil.example:8000"}, None, False),
        ({"host": "x", "origin": "https://ops.example.cn"}, ["https://ops.example.cn/"], True),
        ({"host": "x", "origin": "https://evil.example.cn"}, ["https://ops.example.cn"], False),
        ({"host": "x", "origin": "http://127.0.0.1"}, ["https://ops.example.cn"], False),  # the list decides
    ],
)
def test_origin_allowed(headers: dict[str, str], allowed: list[str] | None, ok: bool) -> None:
    assert origin_allowed(headers, allowed, LOOPBACK) is ok


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("127.0.0.1:8000", LOOPBACK, True),
        ("LOCALHOST", LOOPBACK, True),
        ("[::1]:8000", LOOPBACK, True),
        ("evil.example", LOOPBACK, False),
        ("127.0.0.1.evil.example", LOOPBACK, False),
        ("", LOOPBACK, False),
        ("127.0.0.1:80x", LOOPBACK, False),
        ("wall.cf.example.cn", ("*.cf.example.cn",), True),
        ("cf.example.cn.evil", ("*.cf.example.cn",), False),
        ("anything", ("*",), True),
    ],
)
def test_host_allowed(host: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert host_allowed(host, allowed) is ok
    assert host_name("[::1]:8000") == "::1" and host_name("Wall.Local.:8000") == "wall.local"


@pytest.mark.parametrize(
    ("query", "found"),
    [("token=abc", "token"), ("zone=a&ACCESS_TOKEN=x", "ACCESS_TOKEN"), ("api%5Ftoken=x", "api_token"),
     ("zone=a&mine=true", None), ("epoch=ab12&seq=3", None), ("", None)],
)  # fmt: skip
def test_token_in_query(query: str, found: str | None) -> None:
    assert token_in_query(query) == found


def test_bearer() -> None:
    assert bearer_ok(None, None) and bearer_ok("anything", None)
    assert bearer_ok("Bearer t0k", "t0k") and bearer_ok("bearer t0k", "t0k")
    assert not bearer_ok(None, "t0k") and not bearer_ok("Basic t0k", "t0k") and not bearer_ok("Bearer", "t0k")
    assert not bearer_ok("Bearer t0kX", "t0k")
