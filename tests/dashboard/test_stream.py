"""The /ws push stream through the real ASGI app: a token first, then snapshot, deltas, pings, resync; the
Origin check; an officer's stream cut to their zones."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from dashboard.app import create_app
from dashboard.auth import Principal, token_table
from dashboard.hub import Hub
from domain.levels import Level
from tests.dashboard.client import TestClient, WebSocketDenialResponse
from tests.dashboard.conftest import alert, district_state, zone_state

WALL = "t-wall"
ANN = Principal(person="ann", name="Ann An", role="officer", zones=frozenset({"seg-1"}))
LEE = Principal(person="lee", name="Lee", role="grid_leader", zones=frozenset({"seg-1", "seg-2", "plaza"}))


def app(hub: Hub, **kw: Any) -> Any:
    return create_app(hub, authenticate=token_table({"t-ann": ANN, "t-lee": LEE}), wall_tokens=[WALL], **kw)


def signed_in(ws: Any, token: str = WALL) -> dict[str, Any]:
    """Send the token as the first message, as the pages do; return the first message back (the snapshot)."""
    ws.send_json({"type": "auth", "token": token})
    msg: dict[str, Any] = ws.receive_json()
    return msg


def test_snapshot_first_then_a_delta_after_update(hub: Hub) -> None:
    hub.update([zone_state("plaza", 200, capacity=1500)], None, [])
    with TestClient(app(hub)) as client, client.websocket_connect("/ws") as ws:
        snap = signed_in(ws)
        assert (snap["type"], snap["seq"]) == ("snapshot", 1)
        assert {z["id"] for z in snap["site"]["zones"]} == {"seg-1", "seg-2", "plaza"}
        assert next(z for z in snap["zones"] if z["id"] == "plaza")["occupancy"] == 200
        assert client.portal is not None
        # The service calls update() on the app's own event loop; so does the test.
        client.portal.call(hub.update, [zone_state("seg-1", 1700, level=Level.II)], district_state(), [alert("a1")])
        delta = ws.receive_json()
        assert (delta["type"], delta["seq"]) == ("delta", 2)
        assert [z["id"] for z in delta["zones"]] == ["seg-1"] and delta["zones"][0]["level_label"] == "II orange"
        assert delta["district"]["people_now"] == 3100 and delta["alerts"][0]["id"] == "a1"


def closed(ws: Any) -> tuple[int, str]:
    msg = ws.receive()
    assert msg["type"] == "websocket.close", msg
    return msg["code"], msg.get("reason", "")


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ({"type": "auth", "token": "t-nobody"}, "unknown or expired token"),
        ({"type": "auth", "token": ""}, "missing bearer token"),
        ({"type": "auth"}, "missing bearer token"),
        ({"type": "resync"}, 'send {"type": "auth", "token": "<your token>"}'),
        ("not json", 'send {"type": "auth", "token": "<your token>"}'),
    ],
)
def test_a_missing_or_wrong_token_closes_with_4401_and_a_reason(hub: Hub, first: Any, reason: str) -> None:
    with TestClient(app(hub)) as client, client.websocket_connect("/ws") as ws:
        if isinstance(first, str):
            ws.send_text(first)
        else:
            ws.send_json(first)
        code, said = closed(ws)
        assert code == 4401 and reason in said, said
    assert hub.clients == 0 and hub.rejected["websocket without a valid token"] == 1


def test_no_token_source_closes_with_1013_not_4401(hub: Hub) -> None:
    """The token was not judged (the service has no roster or token now): the page must keep it and retry."""
    with TestClient(create_app(hub)) as client, client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": WALL})
        code, said = closed(ws)
        assert code == 1013 and "nobody can be authenticated" in said
    assert hub.rejected["websocket token not checked now"] == 1


def test_a_silent_client_is_closed_after_the_auth_timeout(hub: Hub) -> None:
    with TestClient(app(hub, ws_auth_timeout_s=0.1)) as client, client.websocket_connect("/ws") as ws:
        code, said = closed(ws)
        assert code == 4401 and "no token within 0.1 s" in said


def test_a_non_browser_client_may_send_the_header_instead(hub: Hub) -> None:
    with TestClient(app(hub)) as client:
        with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {WALL}"}) as ws:
            assert ws.receive_json()["type"] == "snapshot"
        with client.websocket_connect("/ws", headers={"Authorization": "Bearer wrong"}) as ws:
            assert closed(ws)[0] == 4401
        with client.websocket_connect("/ws", headers={"Authorization": f"Basic {WALL}"}) as ws:
            assert closed(ws) == (4401, "Authorization must be 'Bearer <token>'")


@pytest.mark.parametrize("query", ["token=t-wall", "access_token=t-wall", "epoch=x&seq=1&api_token=t-wall"])
def test_a_token_in_the_url_is_refused_with_400_before_the_handshake(hub: Hub, query: str) -> None:
    with (
        TestClient(app(hub)) as client,
        pytest.raises(WebSocketDenialResponse) as info,
        client.websocket_connect(f"/ws?{query}"),
    ):
        pass
    assert info.value.status_code == 400
    assert "Send 'Authorization: Bearer <token>' instead" in info.value.json()["detail"]


def test_allowed_host_origin_accepted_foreign_origin_closed_with_1008(hub: Hub) -> None:
    with TestClient(app(hub)) as client:
        with client.websocket_connect("/ws", headers={"Origin": "http://127.0.0.1"}) as ws:
            assert signed_in(ws)["type"] == "snapshot"
        for origin in ("http://evil.example", "null"):
            with (
                pytest.raises(WebSocketDisconnect) as info,
                client.websocket_connect("/ws", headers={"Origin": origin}),
            ):
                pass
            assert info.value.code == 1008
    assert hub.rejected["websocket from a foreign origin"] == 2


def test_a_rebinding_page_is_refused_by_host_whatever_its_origin(hub: Hub) -> None:
    """A DNS-rebinding page sends its own name as both Host and Origin: the Host allow-list stops it."""
    with TestClient(app(hub), base_url="http://evil.example:8000") as client:
        with (
            pytest.raises(WebSocketDenialResponse) as info,
            client.websocket_connect("/ws", headers={"Origin": "http://evil.example:8000"}),
        ):
            pass
        assert info.value.status_code == 400
        assert "host 'evil.example' is not served here" in info.value.json()["detail"]
        r = client.get("/api/zones", headers={"Authorization": f"Bearer {WALL}"})
        assert r.status_code == 400 and "allowed_hosts" in r.json()["detail"]
    with TestClient(app(hub, allowed_hosts=["wall.cf.example"]), base_url="http://wall.cf.example") as client:
        with client.websocket_connect("/ws", headers={"Origin": "http://wall.cf.example"}) as ws:
            assert signed_in(ws)["type"] == "snapshot"
        assert client.get("/api/zones", headers={"Authorization": f"Bearer {WALL}"}).status_code == 200


def test_configured_origins(hub: Hub) -> None:
    with TestClient(app(hub, allowed_origins=["https://wall.crowdflow.local"])) as client:
        with client.websocket_connect("/ws", headers={"Origin": "https://wall.crowdflow.local:443"}) as ws:
            assert signed_in(ws)["type"] == "snapshot"
        with (
            pytest.raises(WebSocketDisconnect) as info,
            client.websocket_connect("/ws", headers={"Origin": "http://127.0.0.1"}),
        ):
            pass
        assert info.value.code == 1008


def test_an_officers_stream_carries_only_their_zones(hub: Hub) -> None:
    """Officer ann covers seg-1: her snapshot and deltas hold seg-1's state and alerts only. The site map,
    the district headline and the emergency modes are everyone's; seq numbers stay consecutive."""
    hub.update([zone_state("seg-1", 100), zone_state("plaza", 900, capacity=1500)], district_state(),
               [alert("a-seg1", "seg-1"), alert("a-plaza", "plaza")])  # fmt: skip
    hub.set_emergency([{"scope": "riverside", "since": 1.0, "by": "lee", "reason": "fireworks"}])
    with TestClient(app(hub)) as client, client.websocket_connect("/ws") as ws:
        snap = signed_in(ws, "t-ann")
        assert [z["id"] for z in snap["zones"]] == ["seg-1"]
        assert [a["id"] for a in snap["alerts"]] == ["a-seg1"]
        assert {z["id"] for z in snap["site"]["zones"]} == {"seg-1", "seg-2", "plaza"}
        assert snap["district"]["people_now"] == 3100 and snap["emergency"][0]["scope"] == "riverside"
        assert client.portal is not None
        client.portal.call(hub.update, [zone_state("plaza", 1400, capacity=1500)], None, [alert("a2", "plaza")])
        client.portal.call(hub.flush)
        other = ws.receive_json()
        assert (other["seq"], other["zones"], other["alerts"]) == (snap["seq"] + 1, [], [])
        client.portal.call(hub.update, [zone_state("seg-1", 1700, level=Level.II)], None, [alert("a3", "seg-1")])
        client.portal.call(hub.flush)
        mine = ws.receive_json()
        assert mine["seq"] == snap["seq"] + 2
        assert [z["id"] for z in mine["zones"]] == ["seg-1"] and [a["id"] for a in mine["alerts"]] == ["a3"]
        ws.send_json({"type": "resync"})
        again = ws.receive_json()
        assert again["type"] == "snapshot" and {a["id"] for a in again["alerts"]} == {"a-seg1", "a3"}
    with TestClient(app(hub)) as client, client.websocket_connect("/ws") as ws:
        snap = signed_in(ws, "t-lee")  # the grid leader: every zone of the grid
        assert {z["id"] for z in snap["zones"]} == {"seg-1", "seg-2", "plaza"} and len(snap["alerts"]) == 4


def test_idle_stream_pings_and_client_can_ask_for_a_snapshot(hub: Hub) -> None:
    with TestClient(app(hub, ping_interval_s=0.05)) as client, client.websocket_connect("/ws") as ws:
        assert signed_in(ws)["type"] == "snapshot"
        ping = ws.receive_json()
        assert ping["type"] == "ping" and "last_data_age_s" in ping
        ws.send_text("garbage")
        ws.send_json({"type": "resync"})
        while (msg := ws.receive_json())["type"] == "ping":
            pass
        assert msg["type"] == "snapshot"
    assert hub.rejected["unreadable message from a websocket client"] == 1


def test_disconnect_unsubscribes_and_shutdown_closes_with_1001(hub: Hub) -> None:
    with TestClient(app(hub)) as client:
        with client.websocket_connect("/ws") as ws:
            signed_in(ws)
            assert hub.clients == 1
        deadline = time.monotonic() + 5
        while hub.clients and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hub.clients == 0
        with client.websocket_connect("/ws") as ws:
            signed_in(ws)
            assert client.portal is not None
            client.portal.call(hub.close_all)
            msg = ws.receive()
            assert (msg["type"], msg["code"]) == ("websocket.close", 1001)


def test_reconnect_with_epoch_and_seq_resumes_without_a_snapshot(hub: Hub) -> None:
    with TestClient(app(hub)) as client:
        assert client.portal is not None
        with client.websocket_connect("/ws") as ws:
            snap = signed_in(ws)
            epoch, seen = snap["epoch"], snap["seq"]
        for occ in (100, 200):  # while the page is away
            client.portal.call(hub.update, [zone_state("plaza", occ, capacity=1500)], None, [])
        client.portal.call(hub.flush)  # do not wait for the batching timer
        with client.websocket_connect(f"/ws?epoch={epoch}&seq={seen}") as ws:
            ws.send_json({"type": "auth", "token": WALL})
            got = [ws.receive_json() for _ in range(hub.seq - seen)]
        assert [m["type"] for m in got] == ["delta"] * len(got) and got[-1]["seq"] == hub.seq
        assert got[-1]["zones"][0]["occupancy"] == 200
        with client.websocket_connect(f"/ws?epoch={epoch}&seq=not-a-number") as ws:
            assert signed_in(ws)["type"] == "snapshot"


def test_officers_with_the_same_zones_share_one_cut_per_delta(hub: Hub) -> None:
    """Ten phones of the same duty: each delta is cut once and the nine others are served the same text."""
    application = app(hub)
    with TestClient(application) as client:
        sockets = [client.websocket_connect("/ws") for _ in range(10)]
        try:
            for ws in sockets:
                ws.__enter__()
                signed_in(ws, "t-ann")
            scopes = application.state.scopes
            before = (scopes.cuts, scopes.hits)
            assert client.portal is not None
            client.portal.call(hub.update, [zone_state("seg-1", 300)], None, [alert("a9", "seg-1")])
            client.portal.call(hub.flush)
            got = [ws.receive_text() for ws in sockets]
            assert len(set(got)) == 1 and '"a9"' in got[0]
            assert (scopes.cuts - before[0], scopes.hits - before[1]) == (1, 9)
        finally:
            for ws in sockets:
                ws.__exit__(None, None, None)


def test_scope_cache_cuts_once_per_delta_and_zone_set_from_the_structure() -> None:
    from dashboard.feed import Message
    from dashboard.stream import ScopeCache

    body = {"type": "delta", "seq": 7, "ts": None, "district": None, "emergency": None,
            "zones": [{"id": "seg-1", "occupancy": 1}, {"id": "plaza", "occupancy": 2}],
            "alerts": [{"id": "a1", "zone": "seg-1"}, {"id": "a2", "zone": "plaza"}]}  # fmt: skip
    # The hub's message: its text is never decoded (a text that is not JSON proves it).
    delta = Message(7, "delta", text="not json: never decoded", body=body)
    cache = ScopeCache()
    ann, lee = frozenset({"seg-1"}), frozenset({"seg-1", "plaza"})
    cut = json.loads(cache.scoped(ann, delta))
    assert [z["id"] for z in cut["zones"]] == ["seg-1"] and [a["id"] for a in cut["alerts"]] == ["a1"]
    assert cut["seq"] == 7 and body["zones"][1]["id"] == "plaza"  # the hub's own dict is left whole
    for _ in range(5):
        cache.scoped(ann, delta)  # more phones with Ann's zones
    assert len(json.loads(cache.scoped(lee, delta))["zones"]) == 2
    assert (cache.cuts, cache.hits) == (2, 5)  # one cut per distinct zone set
    # The push process's message: received as text, decoded once whatever the zone sets.
    relayed = Message(8, "delta", text=json.dumps(body | {"seq": 8}))
    cache.scoped(ann, relayed)
    decoded = relayed.body()
    cache.scoped(lee, relayed)
    assert relayed.body() is decoded and cache.cuts == 4
