"""REST: health, zones, district, the hub's alert list (no manager), history through a store.

Acting on alerts, tokens and authorisation: test_alerts_api.py and test_auth.py."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.app import create_app
from dashboard.hub import Hub
from domain.clock import ManualClock
from domain.levels import Level
from domain.values import ZoneState
from tests.dashboard.client import TestClient
from tests.dashboard.conftest import T0, alert, district_state, zone_state

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float, float]] = []

    def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[Any]:
        self.calls.append((zone, since, until, every_s))
        return [zone_state(zone, 100, ts=since + 60), {"ts": until, "occupancy": 120.0}]


class BrokenStore:
    def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[ZoneState]:
        raise ConnectionError("influxdb unreachable")


@pytest.fixture
def client(hub: Hub) -> TestClient:
    return TestClient(create_app(hub, store=FakeStore(), api_token=TOKEN), headers=AUTH)


def reader(hub: Hub, store: object | None = None) -> TestClient:
    return TestClient(create_app(hub, store=store, api_token=TOKEN), headers=AUTH)


def test_healthz_reports_status_broker_and_ingest(hub: Hub, client: TestClient, clock: ManualClock) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "degraded"
    hub.update([zone_state("seg-1", 10)], None, [], data_ts=T0)
    hub.set_status("broker", "connected")
    hub.set_status("ingest", {"accepted": 5})
    clock.advance(3)
    body = client.get("/healthz").json()
    assert (body["status"], body["broker"], body["last_data_age_s"], body["ingest"]) == (
        "ok", "connected", 3.0, {"accepted": 5}
    )  # fmt: skip


def test_zones_after_update(hub: Hub, client: TestClient) -> None:
    hub.update([zone_state("seg-1", 1640, level=Level.II)], district_state(), [])
    rows = client.get("/api/zones").json()
    assert [z["id"] for z in rows] == ["seg-1", "seg-2", "plaza"]
    seg1 = rows[0]
    expected = {
        "id": "seg-1", "name_zh": "滨江步道1段", "name_en": "Promenade segment 1",
        "kind": "riverside_segment", "grid": "riverside", "micro_grid": "rs-01", "occupancy": 1640.0,
        "capacity": 2000, "share": 0.82, "density": 0.82, "inflow_per_min": 12.0, "outflow_per_min": 8.0,
        "level": 3, "level_label": "II orange", "colour": Level.II.colour, "healthy": True, "ts": T0,
    }  # fmt: skip
    assert {k: seg1[k] for k in expected} == expected
    assert rows[1]["occupancy"] is None and rows[1]["healthy"] is False  # no data yet: unknown, not calm
    assert client.get("/api/zones/seg-1").json()["occupancy"] == 1640.0
    assert client.get("/api/zones/nope").status_code == 404


def test_district(hub: Hub, client: TestClient) -> None:
    assert client.get("/api/district").status_code == 503
    hub.update([], district_state(), [])
    d = client.get("/api/district").json()
    assert (d["people_now"], d["arrivals_today"], d["arrivals_vs_peak_day_pct"]) == (3100, 40000, 40.0)


def test_alerts_filter(hub: Hub, client: TestClient) -> None:
    hub.update([], None, [alert("a1", level=2), alert("a2", level=4), alert("a3", state="resolved")])
    assert [a["id"] for a in client.get("/api/alerts").json()] == ["a2", "a1"]
    assert [a["id"] for a in client.get("/api/alerts?state=open").json()] == ["a2", "a1"]
    assert [a["id"] for a in client.get("/api/alerts?state=all").json()] == ["a2", "a1", "a3"]
    assert client.get("/api/alerts?state=bogus").status_code == 422


def test_history_goes_through_the_store(hub: Hub) -> None:
    store = FakeStore()
    client = reader(hub, store)
    hub.update([zone_state("seg-1", 10, ts=T0 + 3600)], None, [], data_ts=T0 + 3600)
    r = client.get("/api/zones/seg-1/history?minutes=30")
    assert store.calls == [("seg-1", T0 + 1800, T0 + 3600, 10.0)]  # ending at the newest data's event time
    assert r.status_code == 200
    body = r.json()
    assert (body["zone"], body["start"], body["end"]) == ("seg-1", T0 + 1800, T0 + 3600)
    assert body["points"][0]["occupancy"] == 100 and body["points"][1] == {
        "ts": T0 + 3600,
        "occupancy": 120.0,
    }
    assert client.get("/api/zones/ghost/history").status_code == 404
    assert client.get("/api/zones/seg-1/history?minutes=0").status_code == 422


def test_history_without_or_with_failing_store(hub: Hub) -> None:
    r = reader(hub).get("/api/zones/seg-1/history")
    assert r.status_code == 503 and "no history store" in r.json()["detail"]
    r = reader(hub, BrokenStore()).get("/api/zones/seg-1/history")
    assert r.status_code == 503 and "influxdb unreachable" in r.json()["detail"]
    with pytest.raises(TypeError, match="history"):
        create_app(hub, store=object())


def test_unhealthy_calm_zone_is_shown_unknown_not_green(mini_site) -> None:  # type: ignore[no-untyped-def]
    from dashboard.views import zone_view
    from domain.levels import Level
    from domain.values import ZoneState

    st = ZoneState(zone="seg-1", ts=1.0, occupancy=10, capacity=2000, share=0.005, density=0.005,
                   inflow_per_min=0, outflow_per_min=0, arrivals_today=0, healthy=False)  # fmt: skip
    v = zone_view(mini_site.zones["seg-1"], st)
    assert v["level_label"] == "unknown" and v["colour"] != Level.NORMAL.colour
    st.level, st.healthy = Level.II, False
    v = zone_view(mini_site.zones["seg-1"], st)
    assert v["level_label"] == "II orange" and v["colour"] == Level.II.colour  # a known danger stays shown


def test_without_any_token_source_reads_are_refused_not_open(hub: Hub) -> None:
    hub.update([], None, [alert("a1")])
    client = TestClient(create_app(hub))
    for path in ("/api/alerts", "/api/zones", "/api/district", "/api/me"):
        r = client.get(path)
        assert r.status_code == 503 and "no duty roster and no dashboard token" in r.json()["detail"], path
    assert client.get("/healthz").status_code == 200  # monitoring probes carry no token
