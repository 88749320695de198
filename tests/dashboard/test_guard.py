"""Host, Origin, query-string and bearer-token checks, edge cases the app tests do not reach."""

from __future__ import annotations

from urllib.parse import urlsplit

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


@pytest.mark.parametrize("reason", ["a" * 200, "é" * 100, "警" * 60, "🚨" * 40, "ab" + "警" * 60, "x\ud800y" * 50])
def test_a_close_reason_fits_123_bytes_and_never_splits_a_character(reason: str) -> None:
    from dashboard.guard import close_reason

    out = close_reason(reason)
    data = out.encode("utf-8")  # strict: a split character or a surrogate would raise
    assert len(data) <= 123
    assert 123 - len(data) < 4  # as much as fits: at most one character's bytes short of the bound
    assert reason.encode("utf-8", errors="replace").startswith(data)


def test_a_short_close_reason_is_kept_whole() -> None:
    from dashboard.guard import close_reason

    assert close_reason("origin not allowed") == "origin not allowed"


def test_the_push_process_also_lets_the_dashboards_own_pages_in() -> None:
    listed = ["https://wall.example.cn"]
    hosts = ["wall.example.cn", "127.0.0.1"]

    def ok(origin: str, site_port: int | None = 8000, host: str | None = None) -> bool:
        asked = host or (urlsplit(origin).hostname or "x") + ":8001"  # the push port, on the page's host name
        return origin_allowed({"origin": origin, "host": asked}, listed, hosts, site_port=site_port)

    assert ok("https://wall.example.cn") and ok("http://127.0.0.1:8000") and ok("https://wall.example.cn:8000")
    assert not ok("http://127.0.0.1:8001") and not ok("http://evil.example:8000") and not ok("null")
    assert not ok("http://127.0.0.1:8000", site_port=None)  # the main port itself: the configured list only
    assert ok("http://wall.example.cn", site_port=80) and not ok("https://wall.example.cn:8443", site_port=443)
    assert not ok("http://127.0.0.1:8000", host="wall.example.cn:8001")  # another host than the one asked


@pytest.mark.parametrize("hosts", [["*"], ["*.example.cn"], ["*", "wall.example.cn"]])
def test_a_host_wildcard_never_lets_another_site_in_on_the_push_port(hosts: list[str]) -> None:
    listed = ["https://wall.example.cn"]

    def ok(origin: str, host: str) -> bool:
        return origin_allowed({"origin": origin, "host": host}, listed, hosts, site_port=8000)

    # The reviewer's case: any site on port 8000 passed when allowed_hosts had a wildcard.
    assert not origin_allowed({"origin": "http://evil.example:8000"}, listed, hosts, site_port=8000)
    assert not ok("http://evil.example:8000", "127.0.0.1:8001")
    assert not ok("http://evil.example.cn:8000", "wall.example.cn:8001")
    # A rebinding page names itself in both headers: only a host listed by name passes.
    assert not ok("http://evil.example.cn:8000", "evil.example.cn:8001")
    assert ok("https://wall.example.cn", "wall.example.cn:8001")  # the configured origin, as before
    assert ok("http://wall.example.cn:8000", "wall.example.cn:8001") == ("wall.example.cn" in hosts)
