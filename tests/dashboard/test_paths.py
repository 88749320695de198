"""Paths in requests cannot escape their directories: static files stay inside dashboard/static whatever the
dots, encodings and separators; path parameters are identifiers looked up in tables, never file names.

The requests go to the app as raw ASGI paths (an HTTP client would normalise "../" away before sending), the
way uvicorn hands them over: `path` percent-decoded once, `raw_path` as sent."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

import pytest

from dashboard.app import STATIC_DIR, create_app
from dashboard.hub import Hub

REPO_FILE = "pyproject.toml"  # two levels above dashboard/static: what an escape would read
SECRET_MARK = b"[tool.ruff]"

TRAVERSALS = [
    f"/../../{REPO_FILE}",
    f"/%2e%2e/%2e%2e/{REPO_FILE}",
    f"/%2E%2E%2F%2E%2E%2F{REPO_FILE}",
    f"/..%2f..%2f{REPO_FILE}",
    f"/vendor/../../../{REPO_FILE}",
    f"/vendor/%2e%2e/%2e%2e/%2e%2e/{REPO_FILE}",
    f"/..%5c..%5c{REPO_FILE}",  # backslashes
    f"/%252e%252e/%252e%252e/{REPO_FILE}",  # double-encoded: decoded once, stays literal
    f"/....//....//{REPO_FILE}",
    "/../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    f"//{STATIC_DIR.parent.parent}/{REPO_FILE}",  # an absolute path after the slash
]


def call(app: Any, raw: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET through the ASGI app with `raw` as the request target, the lifespan skipped (not needed)."""
    path, _, query = raw.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": unquote(path), "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    status = 0
    body = b""

    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if sent_body:  # the response is out: the client has gone
            return {"type": "http.disconnect"}
        sent_body = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return status, body


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_static_files_cannot_escape_their_directory(hub: Hub, raw: str) -> None:
    assert (STATIC_DIR.parent.parent / REPO_FILE).exists()  # there is something to steal
    status, body = call(create_app(hub), raw)
    assert status in (400, 404), (raw, status)
    assert SECRET_MARK not in body and b"root:" not in body


def test_the_same_request_inside_the_directory_is_served(hub: Hub) -> None:
    assert call(create_app(hub), "/app.js")[0] == 200
    assert call(create_app(hub), "/vendor/../app.js")[0] == 200  # dots that stay inside are fine


@pytest.mark.parametrize(
    "raw",
    [
        f"/api/zones/..%2F..%2F{REPO_FILE}",
        f"/api/zones/%2e%2e%2f%2e%2e%2f{REPO_FILE}/history",
        "/api/alerts/..%2F..%2Fetc%2Fpasswd",
        "/api/alerts/..%2F..%2Fetc%2Fpasswd/cap",
        f"/api/report/daily.csv?date=..%2F..%2F{REPO_FILE}",
    ],
)
def test_path_parameters_are_identifiers_not_paths(hub: Hub, raw: str) -> None:
    app = create_app(hub, api_token="t-ops", store=None)
    status, body = call(app, raw, {"Authorization": "Bearer t-ops"})
    assert status in (404, 422, 503), (raw, status, body)
    assert SECRET_MARK not in body and b"root:" not in body
