"""Tokens and principals: header-only bearer tokens, constant-time lookup, roster and operator token together,
and who may act on which zone."""

from __future__ import annotations

import hmac

import pytest

from alerts.roster import load_roster
from alerts.routing import Router
from dashboard.app import create_app
from dashboard.auth import Principal, first_of, from_directory, operator_token, token_table
from dashboard.hub import Hub
from domain.clock import ManualClock
from domain.site import Site
from tests.conftest import FIXTURES
from tests.dashboard.client import TestClient
from tests.dashboard.test_alerts_api import OPS, TOKENS, WANG, FakeActions, auth


@pytest.fixture
def actions(mini_site: Site, clock: ManualClock) -> FakeActions:
    fake = FakeActions(mini_site, clock)
    fake.raise_alert("a-seg1", "seg-1")
    fake.raise_alert("a-plaza", "plaza")
    return fake


@pytest.fixture
def client(hub: Hub, actions: FakeActions) -> TestClient:
    return TestClient(create_app(hub, actions=actions, authenticate=token_table(TOKENS), api_token=OPS))


def test_can_act() -> None:
    assert WANG.can_act("seg-1") and not WANG.can_act("plaza")
    nobody = Principal(person="new", name="New", role="officer", zones=frozenset())
    assert not nobody.can_act("seg-1")
    assert Principal(person="x", name="X", role="officer", zones=None).can_act("anything")  # None: all zones
    # command and operator act on every zone whatever a roster lists for them
    assert Principal(person="c", name="C", role="command", zones=frozenset()).can_act("plaza")


def test_token_table_operator_token_and_first_of() -> None:
    table = token_table({"t-wang": WANG, "": WANG})
    assert table("t-wang") is WANG and table("t-wan") is None and table("t-wang ") is None
    assert table("") is None  # an empty token in the roster never matches
    ops = operator_token("t-ops")("t-ops")
    assert ops is not None and (ops.person, ops.role, ops.zones) == ("operator", "operator", None)
    with pytest.raises(ValueError, match="empty api_token"):
        operator_token("")
    both = first_of(None, table, operator_token("t-ops"))
    assert both("t-wang") is WANG and both("t-ops") == ops and both("nope") is None
    assert first_of()("t-wang") is None


def test_every_token_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the time taken does not tell which entry matched, or how early."""
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(a))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    table = token_table({f"tok-{i}": WANG for i in range(5)} | {"a-much-longer-token-value": WANG})
    for token in ("tok-0", "tok-4", "x", "a-much-longer-token-value"):
        calls.clear()
        table(token)
        assert calls == [32] * 6, token  # all six, each on a fixed-length digest


def test_missing_token_is_401_with_a_challenge(client: TestClient) -> None:
    r = client.post("/api/alerts/a-seg1/ack", json={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer <token>" in r.json()["detail"]


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer t-wang-x", "Basic dDp3YW5n", "t-wang", "Bearer "])
def test_wrong_or_malformed_token_is_401(client: TestClient, header: str) -> None:
    r = client.post("/api/alerts/a-seg1/ack", json={}, headers={"Authorization": header})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_token_says_so(client: TestClient) -> None:
    r = client.get("/api/me", headers=auth("t-stale"))
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert r.json()["detail"].startswith("unknown or expired token")


@pytest.mark.parametrize("param", ["token", "access_token", "api_token", "authorization", "Token", "api%5Ftoken"])
def test_a_token_in_the_query_string_is_refused_with_400(client: TestClient, actions: FakeActions, param: str) -> None:
    r = client.post(f"/api/alerts/a-seg1/ack?{param}=t-wang", json={})
    assert r.status_code == 400
    assert "Send 'Authorization: Bearer <token>' instead" in r.json()["detail"]
    # refused even with a good header: the URL has already leaked the secret, and nothing may suggest it works
    assert client.get(f"/api/me?{param}={OPS}", headers=auth(OPS)).status_code == 400
    assert client.get(f"/officer?{param}=x").status_code == 400  # pages too: the URL is what gets logged
    assert actions.alerts["a-seg1"].state == "raised"


def test_scheme_is_case_insensitive_and_both_sources_work_together(client: TestClient) -> None:
    assert client.get("/api/me", headers={"Authorization": "bearer t-wang"}).json()["person"] == "wang.li"
    assert client.get("/api/me", headers=auth(OPS)).json()["person"] == "operator"


def test_api_token_alone_still_works_as_the_operator(hub: Hub, actions: FakeActions) -> None:
    client = TestClient(create_app(hub, actions=actions, api_token=OPS))
    r = client.post("/api/alerts/a-plaza/ack", json={"comment": "seen"}, headers=auth(OPS))
    assert r.status_code == 200 and r.json()["history"][-1]["by"] == "operator"
    assert client.post("/api/alerts/a-seg1/ack", json={}, headers=auth("t-wang")).status_code == 401


def test_403_names_the_zone_and_who_may_act(client: TestClient) -> None:
    r = client.post("/api/alerts/a-seg1/ack", json={}, headers=auth("t-zhao"))
    assert r.status_code == 403
    assert r.json() == {
        "detail": "officer zhao.min is not on duty for seg-1; ask the command centre or the segment's officer"
    }
    assert client.post("/api/alerts/a-plaza/ack", json={}, headers=auth("t-zhao")).status_code == 200


def test_the_duty_roster_authenticates_officers_leaders_and_command(
    hub: Hub, actions: FakeActions, mini_site: Site
) -> None:
    """The real roster (tests/fixtures/mini_roster.toml): tokens are the sha256 of 'token-<person>'."""
    router = Router(load_roster(FIXTURES / "mini_roster.toml", mini_site), mini_site)
    roster = from_directory(router)
    assert roster("token-ann") == Principal(
        person="ann", name="Ann An (安)", role="officer", zones=frozenset({"seg-1"})
    )
    lee = roster("token-lee")
    assert lee is not None and lee.role == "grid_leader" and lee.zones == frozenset({"seg-1", "seg-2", "plaza"})
    cmd = roster("token-cmd")
    assert cmd is not None and cmd.zones is None and roster("token-bob") is None and roster("") is None

    client = TestClient(create_app(hub, actions=actions, authenticate=roster, api_token=OPS))
    r = client.post("/api/alerts/a-plaza/ack", json={}, headers=auth("token-ann"))
    assert r.status_code == 403 and r.json()["detail"] == (
        "officer ann is not on duty for plaza; ask the command centre or the zone's officer"
    )
    assert client.post("/api/alerts/a-seg1/ack", json={}, headers=auth("token-ann")).status_code == 200
    assert client.post("/api/alerts/a-plaza/ack", json={}, headers=auth("token-lee")).status_code == 200
    assert client.get("/api/me", headers=auth(OPS)).json()["person"] == "operator"  # both configured
