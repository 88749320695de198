"""The /ws push stream through the real ASGI app: snapshot first, deltas, pings, resync, origin check."""

from __future__ import annotations

import time

import pytest
from starlette.websockets import WebSocketDisconnect

from dashboard.app import create_app
from dashboard.hub import Hub
from domain.levels import Level
from tests.dashboard.client import TestClient
from tests.dashboard.conftest import alert, district_state, zone_state


def test_snapshot_first_then_a_delta_after_update(hub: Hub) -> None:
    hub.update([zone_state("plaza", 200, capacity=1500)], None, [])
    with TestClient(create_app(hub)) as client, client.websocket_connect("/ws") as ws:
        snap = ws.receive_json()
        assert (snap["type"], snap["seq"]) == ("snapshot", 1)
        assert {z["id"] for z in snap["site"]["zones"]} == {"seg-1", "seg-2", "plaza"}
        assert next(z for z in snap["zones"] if z["id"] == "plaza")["occupancy"] == 200
        assert client.portal is not None
        # The service calls update() on the app's own event loop; so does the test.
        client.portal.call(
            hub.update, [zone_state("seg-1", 1700, level=Level.II)], district_state(), [alert("a1")]
        )
        delta = ws.receive_json()
        assert (delta["type"], delta["seq"]) == ("delta", 2)
        assert [z["id"] for z in delta["zones"]] == ["seg-1"] and delta["zones"][0][
            "level_label"
        ] == "II orange"
        assert delta["district"]["people_now"] == 3100 and delta["alerts"][0]["id"] == "a1"


def test_same_host_origin_allowed_foreign_origin_closed_with_1008(hub: Hub) -> None:
    with TestClient(create_app(hub)) as client:
        with client.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:
            assert ws.receive_json()["type"] == "snapshot"
        with (
            pytest.raises(WebSocketDisconnect) as info,
            client.websocket_connect("/ws", headers={"Origin": "http://evil.example"}),
        ):
            pass
        assert info.value.code == 1008
    assert hub.rejected["websocket from a foreign origin"] == 1


def test_configured_origins(hub: Hub) -> None:
    app = create_app(hub, allowed_origins=["https://wall.crowdflow.local"])
    with TestClient(app) as client:
        with client.websocket_connect("/ws", headers={"Origin": "https://wall.crowdflow.local:443"}) as ws:
            assert ws.receive_json()["type"] == "snapshot"
        with (
            pytest.raises(WebSocketDisconnect) as info,
            client.websocket_connect("/ws", headers={"Origin": "http://testserver"}),
        ):
            pass
        assert info.value.code == 1008


def test_idle_stream_pings_and_client_can_ask_for_a_snapshot(hub: Hub) -> None:
    with TestClient(create_app(hub, ping_interval_s=0.05)) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["type"] == "snapshot"
        ping = ws.receive_json()
        assert ping["type"] == "ping" and "last_data_age_s" in ping
        ws.send_text("garbage")
        ws.send_json({"type": "resync"})
        while (msg := ws.receive_json())["type"] == "ping":
            pass
        assert msg["type"] == "snapshot"
    assert hub.rejected["unreadable message from a websocket client"] == 1


def test_disconnect_unsubscribes_and_shutdown_closes_with_1001(hub: Hub) -> None:
    with TestClient(create_app(hub)) as client:
        with client.websocket_connect("/ws") as ws:
            ws.receive_json()
            assert hub.clients == 1
        deadline = time.monotonic() + 5
        while hub.clients and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hub.clients == 0
        with client.websocket_connect("/ws") as ws:
            ws.receive_json()
            assert client.portal is not None
            client.portal.call(hub.close_all)
            msg = ws.receive()
            assert (msg["type"], msg["code"]) == ("websocket.close", 1001)


def test_reconnect_with_epoch_and_seq_resumes_without_a_snapshot(hub: Hub) -> None:
    with TestClient(create_app(hub)) as client:
        assert client.portal is not None
        with client.websocket_connect("/ws") as ws:
            snap = ws.receive_json()
            epoch, seen = snap["epoch"], snap["seq"]
        for occ in (100, 200):  # while the page is away
            client.portal.call(hub.update, [zone_state("plaza", occ, capacity=1500)], None, [])
        client.portal.call(hub.flush)  # do not wait for the batching timer
        with client.websocket_connect(f"/ws?epoch={epoch}&seq={seen}") as ws:
            got = [ws.receive_json() for _ in range(hub.seq - seen)]
        assert [m["type"] for m in got] == ["delta"] * len(got) and got[-1]["seq"] == hub.seq
        assert got[-1]["zones"][0]["occupancy"] == 200
        with client.websocket_connect(f"/ws?epoch={epoch}&seq=not-a-number") as ws:
            assert ws.receive_json()["type"] == "snapshot"
