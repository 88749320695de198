"""Every route x every role: allowed, 401 without a token, 403 with a reason. The expected table is written out
here (it is docs/api-security.md's), not read from dashboard/policy.py, so a change to either shows up."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.app import create_app
from dashboard.auth import token_table
from dashboard.hub import Hub
from dashboard.policy import GRANTS
from domain.clock import ManualClock
from domain.site import Site
from tests.dashboard.client import TestClient
from tests.dashboard.conftest import district_state
from tests.dashboard.test_alerts_api import CHEN, CMD, EVENT, WANG, ZHAO, FakeActions, auth

SILENCE = {"matchers": {"zone": "seg-1"}, "duration_min": 30, "reason": "counter under repair"}

# name -> (method, path, body). Zone-scoped routes all aim at seg-1 (officer wang's, not officer zhao's).
ROUTES: dict[str, tuple[str, str, Any]] = {
    "zones": ("GET", "/api/zones", None),
    "zone": ("GET", "/api/zones/seg-1", None),
    "district": ("GET", "/api/district", None),
    "history": ("GET", "/api/zones/seg-1/history", None),
    "alerts": ("GET", "/api/alerts", None),
    "alert": ("GET", "/api/alerts/a-seg1", None),
    "cap": ("GET", "/api/alerts/a-seg1/cap", None),
    "deliveries": ("GET", "/api/alerts/a-seg1/deliveries", None),
    "ack": ("POST", "/api/alerts/a-seg1/ack", {"comment": "on my way"}),
    "comment": ("POST", "/api/alerts/a-seg1/comment", {"text": "stewards sent"}),
    "resolve": ("POST", "/api/alerts/a-seg1/resolve", {"comment": "cleared"}),
    "silences": ("GET", "/api/silences", None),
    "silence": ("POST", "/api/silences", SILENCE),
    "events": ("GET", "/api/events", None),
    "event": ("POST", "/api/events", EVENT | {"zones": ["seg-1"]}),
    "emergency": ("GET", "/api/emergency", None),
    "switch_grid": ("POST", "/api/emergency", {"scope": "riverside", "on": True, "reason": "crowd"}),
    "switch_district": ("POST", "/api/emergency", {"scope": "district", "on": True, "reason": "crowd"}),
    "metrics": ("GET", "/api/metrics/response", None),
    "report": ("GET", "/api/report/daily", None),
    "audit": ("GET", "/api/audit", None),
    "me": ("GET", "/api/me", None),
    "push_list": ("GET", "/api/push/subscriptions", None),
}

READ_LIVE = {"zones", "zone", "district", "history", "alerts", "alert", "cap", "emergency", "me"}
ACT = {"ack", "comment", "resolve", "silence", "deliveries"}
DESK = {"silences", "events", "metrics"}
EVERYTHING = set(ROUTES)

ALLOWED: dict[str, set[str]] = {
    "t-wall": READ_LIVE | DESK | {"report"},
    "t-wang": READ_LIVE | ACT | {"push_list"},  # officer on duty for seg-1
    "t-zhao": {"zones", "district", "alerts", "emergency", "me", "push_list"},  # officer elsewhere (plaza)
    "t-chen": EVERYTHING - {"report", "audit", "switch_district"},  # the riverside grid's leader
    "t-ops": EVERYTHING - {"event", "switch_grid", "switch_district"},
    "t-cmd": EVERYTHING,
    "t-admin": EVERYTHING,
}
TOKENS = {"t-wang": WANG, "t-zhao": ZHAO, "t-chen": CHEN, "t-cmd": CMD}
CASES = [(token, route) for token in ALLOWED for route in ROUTES]


@pytest.fixture
def client(mini_site: Site, clock: ManualClock) -> TestClient:
    actions = FakeActions(mini_site, clock)
    actions.raise_alert("a-seg1", "seg-1")
    hub = Hub(mini_site, clock=clock)
    hub.update([], district_state(), [])

    class Store:
        def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[Any]:
            return []

    app = create_app(hub, store=Store(), actions=actions, authenticate=token_table(TOKENS), api_token="t-ops",
                     wall_tokens=["t-wall"], admin_token="t-admin")  # fmt: skip
    return TestClient(app)


@pytest.mark.parametrize(("token", "route"), CASES)
def test_each_route_for_each_role(client: TestClient, token: str, route: str) -> None:
    method, path, body = ROUTES[route]
    r = client.request(method, path, json=body, headers=auth(token))
    if route in ALLOWED[token]:
        assert r.status_code not in (401, 403), (token, route, r.text)
        assert r.status_code < 500 or route == "report", (token, route, r.text)  # report: 503, no day's rows
    else:
        assert r.status_code == 403, (token, route, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and ("ask" in detail or "your own" in detail), detail


@pytest.mark.parametrize("route", list(ROUTES))
def test_each_route_needs_a_token(client: TestClient, route: str) -> None:
    method, path, body = ROUTES[route]
    r = client.request(method, path, json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    r = client.request(method, path, json=body, headers=auth("t-nobody"))
    assert r.status_code == 401 and "unknown or expired token" in r.json()["detail"]


def test_open_routes_are_only_health_the_push_key_and_pages(client: TestClient) -> None:
    """Without a token: /healthz (counters, no zone data), the public VAPID key route, and the static pages."""
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/push/key").status_code == 404  # open: here it says push is not configured
    for page in ("/", "/officer", "/report", "/app.js"):
        assert client.get(page).status_code == 200, page
    health = client.get("/healthz").json()
    assert "zones" not in health and "alerts" not in health


def test_refusals_name_the_person_and_whom_to_ask(client: TestClient) -> None:
    r = client.post("/api/alerts/a-seg1/ack", json={}, headers=auth("t-wall"))
    assert r.json()["detail"] == (
        "wall wall may not acknowledge, comment on or resolve alerts: the wall's token is read-only: sign in "
        "with your own token to act"
    )
    r = client.get("/api/report/daily", headers=auth("t-wang"))
    assert r.json()["detail"] == "officer wang.li may not read the district's daily report: ask the command " \
        "centre for the report"  # fmt: skip
    r = client.post("/api/events", json=EVENT, headers=auth("t-ops"))
    assert r.json()["detail"] == (
        "operator operator may not register or end planned events: ask the grid leader or the command centre"
    )


def test_the_written_table_matches_the_grants() -> None:
    """Role names in the table above are the policy's, and every permission is granted to someone."""
    assert set().union(*GRANTS.values()) == {"wall", "officer", "grid_leader", "operator", "command", "admin"}
    assert GRANTS["audit.read"] == {"operator", "command", "admin"}
    assert "wall" not in GRANTS["alert.act"] and "officer" not in GRANTS["event.write"]
