"""GET /api/stream tells the pages where the push stream is, and the pages' CSP lets them connect there; the
hub's fan-out budget counts the push process's clients."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.app import create_app
from dashboard.hub import Hub
from tests.dashboard.client import TestClient


@pytest.mark.parametrize(
    ("kw", "answer", "csp"),
    [
        ({"stream_port": 8101}, {"url": None, "port": 8101}, " ws://localhost:8101 wss://localhost:8101;"),
        ({"stream_port": 8101, "stream_url": "/ws"}, {"url": "/ws", "port": None}, " wss://localhost:8000;"),
        (
            {"stream_port": 8101, "stream_url": "wss://push.example.cn/ws"},
            {"url": "wss://push.example.cn/ws", "port": None},
            " wss://push.example.cn;",
        ),
        ({}, {"url": "/ws", "port": None}, " wss://localhost:8000;"),
    ],
)
def test_the_pages_are_told_where_the_stream_is(hub: Hub, kw: dict[str, Any], answer: dict[str, Any], csp: str) -> None:
    with TestClient(create_app(hub, api_token="t-op", **kw), base_url="http://localhost:8000") as client:
        r = client.get("/api/stream")  # open: no token, like /healthz
        assert r.status_code == 200 and r.json() == answer
        policy = client.get("/").headers["content-security-policy"]
        assert "connect-src 'self' ws://localhost:8000 wss://localhost:8000" in policy
        assert csp in policy, policy


def test_the_fan_out_budget_counts_the_push_process_clients(hub: Hub) -> None:
    budgeted = Hub(hub.site, batch_interval_s=0.05, max_sends_per_s=4000)
    assert budgeted.interval_s() == 0.05
    budgeted.remote_clients = 2000  # reported by the push process each second
    assert budgeted.interval_s() == 0.5
    assert budgeted.health()["clients"] == 2000 and budgeted.health()["delta_interval_s"] == 0.5


@pytest.mark.parametrize(
    ("kw", "while_down"),
    [
        ({"stream_port": 8101}, {"url": "/ws", "port": None}),
        ({"stream_port": 8101, "stream_url": "wss://push.example.cn/ws"}, {"url": "/ws", "port": None}),
        ({"stream_port": 8101, "stream_url": "/push/ws"}, {"url": "/push/ws", "port": None}),  # the proxy's route
    ],
)
def test_while_the_push_process_is_down_the_pages_are_sent_to_this_origins_ws(
    hub: Hub, kw: dict[str, Any], while_down: dict[str, Any]
) -> None:
    up = [False]
    with TestClient(create_app(hub, api_token="t-op", stream_up=lambda: up[0], **kw)) as client:
        assert client.get("/api/stream").json() == while_down
        up[0] = True
        assert client.get("/api/stream").json() != {"url": "/ws", "port": None}


def test_a_push_process_down_for_more_than_a_few_seconds_degrades_healthz(hub: Hub) -> None:
    hub.note_data(hub.clock.now())  # fresh data: only the relay can degrade it
    hub.set_status("relay", {"state": "starting", "down_for_s": 1.0, "restarts": 0, "last_exit": None})
    assert hub.health()["status"] == "ok", hub.health()  # a start takes a moment
    hub.set_status("relay", {"state": "down", "down_for_s": 42.0, "restarts": 4, "last_exit": 3})
    health = hub.health()
    assert health["status"] == "degraded", health
    said = next(r for r in health["reasons"] if "push process" in r)
    assert "42 s" in said and "last exit 3" in said and 'push_port = "off"' in said and "log" in said
    hub.set_status("relay", {"state": "up", "down_for_s": None})
    assert not any("push process" in r for r in hub.health()["reasons"])
