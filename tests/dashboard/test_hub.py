"""Hub: stored state, deltas with only what changed, snapshots, slow clients resynced, counted rejections."""

from __future__ import annotations

import json
from typing import Any

from alerts.encode import alert_json
from dashboard.hub import Hub
from domain.clock import ManualClock
from domain.levels import Level
from domain.site import Site
from domain.values import Alert
from tests.dashboard.conftest import T0, alert, district_state, zone_state


def _msg(text: str | None) -> dict[str, Any]:
    assert text is not None, "expected a message, got an idle timeout"
    out: dict[str, Any] = json.loads(text)
    return out


async def test_snapshot_before_any_data_lists_every_zone_as_no_data(hub: Hub) -> None:
    snap = hub.snapshot()
    assert snap["type"] == "snapshot" and snap["seq"] == 0
    assert [z["id"] for z in snap["site"]["zones"]] == ["seg-1", "seg-2", "plaza"]
    assert snap["site"]["riverside"] == ["seg-1", "seg-2"]
    seg1 = snap["site"]["zones"][0]
    assert seg1["polygon"] == [[0, 0], [100, 0], [100, 20], [0, 20]]
    assert (seg1["micro_grid"], seg1["capacity"], seg1["kind"]) == ("rs-01", 2000, "riverside_segment")
    assert all(z["healthy"] is False and z["level_label"] == "no data" for z in snap["zones"])
    assert snap["district"] is None and snap["alerts"] == []
    assert [lv["label"] for lv in snap["site"]["levels"]] == [
        "normal",
        "IV blue",
        "III yellow",
        "II orange",
        "I red",
    ]


async def test_delta_carries_only_changed_zones_and_one_message_per_client(hub: Hub) -> None:
    a, b = hub.subscribe(), hub.subscribe()
    assert _msg(await a.next(1))["type"] == "snapshot"
    assert _msg(await b.next(1))["type"] == "snapshot"
    hub.update([zone_state("seg-1", 1000), zone_state("plaza", 300)], district_state(), [alert("a1")])
    hub.update(
        [zone_state("seg-1", 1000), zone_state("plaza", 310)], None, [alert("a1")]
    )  # seg-1, a1 unchanged
    first, second = _msg(await a.next(1)), _msg(await a.next(1))
    assert (first["type"], first["seq"], second["seq"]) == ("delta", 1, 2)
    assert {z["id"] for z in first["zones"]} == {"seg-1", "plaza"}
    assert first["district"]["people_now"] == 3100 and first["district"]["arrivals_vs_profile_pct"] == 125.0
    assert [x["id"] for x in first["alerts"]] == ["a1"] and first["alerts"][0]["level_label"] == "II orange"
    assert [z["id"] for z in second["zones"]] == ["plaza"] and second["zones"][0]["occupancy"] == 310
    assert second["alerts"] == [] and second["district"] is None
    assert b.pending == 2 and a.pending == 0


async def test_zone_view_has_level_label_and_colour(hub: Hub) -> None:
    hub.update([zone_state("seg-2", 1640, level=Level.II)], None, [])
    z = hub.zone("seg-2")
    assert z is not None
    assert (z["level"], z["level_label"], z["colour"], z["share"]) == (3, "II orange", Level.II.colour, 0.82)


async def test_slow_client_gets_a_fresh_snapshot_not_a_backlog(mini_site: Site, clock: ManualClock) -> None:
    hub = Hub(mini_site, client_queue=4, clock=clock)
    slow, fast = hub.subscribe(), hub.subscribe()
    await slow.next(1)
    await fast.next(1)
    for i in range(10):
        hub.update([zone_state("seg-1", 100 + i)], None, [])
        assert _msg(await fast.next(1))["seq"] == i + 1  # the fast client keeps up, deltas in order
    assert slow.pending == 0 and slow.needs_snapshot
    assert hub.resyncs == 1
    msg = _msg(await slow.next(1))
    assert msg["type"] == "snapshot" and msg["seq"] == 10
    assert next(z for z in msg["zones"] if z["id"] == "seg-1")["occupancy"] == 109
    hub.update([zone_state("seg-1", 500)], None, [])
    after = _msg(await slow.next(1))
    assert (after["type"], after["seq"]) == ("delta", 11)  # deltas resume right after the snapshot's seq
    hub.unsubscribe(slow)
    assert hub.resyncs == 1 and hub.clients == 1  # the count survives the client's departure


async def test_idle_feed_returns_none_for_a_ping_and_closed_feed_ends(hub: Hub) -> None:
    feed = hub.subscribe()
    await feed.next(1)
    assert await feed.next(0.01) is None
    ping = json.loads(hub.ping_text())
    assert ping["type"] == "ping" and ping["last_data_age_s"] is None
    hub.close_all()
    assert feed.closed and await feed.next(1) is None and hub.clients == 0


async def test_alerts_open_and_recent_resolved_sorted_severe_and_new_first(mini_site: Site) -> None:
    hub = Hub(mini_site, recent_resolved=2)
    hub.update([], None, [alert("old-red", level=4, ts=T0), alert("new-orange", level=3, ts=T0 + 60),
                          alert("new-red", level=4, ts=T0 + 120)])  # fmt: skip
    assert [a["id"] for a in hub.alerts("open")] == ["new-red", "old-red", "new-orange"]
    hub.update([], None, [alert("old-red", level=4, state="resolved", ts=T0 + 200)])
    assert [a["id"] for a in hub.alerts("open")] == ["new-red", "new-orange"]
    assert [a["id"] for a in hub.alerts("all")] == ["new-red", "new-orange", "old-red"]
    for i in range(3):
        hub.update([], None, [alert(f"r{i}", state="resolved", ts=T0 + 300 + i)])
    assert [a["id"] for a in hub.alerts("all") if not a["open"]] == ["r2", "r1"]  # capped, newest kept


async def test_bad_input_is_counted_never_raised(hub: Hub) -> None:
    hub.update(
        [zone_state("nowhere", 10), zone_state("seg-1", 10)],
        None,
        [{"zone": "seg-1", "level": 3, "state": "raised"}, alert("x", zone=""), alert("y", level=9),
         alert("z", state="lost"), "not a dict", alert("ok")],  # type: ignore[list-item]
    )  # fmt: skip
    assert hub.rejected == {
        "zone state for an unknown zone": 1,
        "alert without a string id": 1,
        "alert without a zone": 1,
        "alert with an unknown level": 1,
        "alert with an unknown state": 1,
        "alert that is not a JSON object": 1,
    }
    assert [a["id"] for a in hub.alerts()] == ["ok"]
    assert hub.zone("seg-1") is not None and hub.zone("seg-1")["occupancy"] == 10  # type: ignore[index]


async def test_health_degrades_without_broker_or_fresh_data(hub: Hub, clock: ManualClock) -> None:
    assert hub.health()["status"] == "degraded" and hub.health()["reasons"] == ["no data yet"]
    hub.update([zone_state("seg-1", 10)], None, [])
    assert hub.health()["reasons"] == ["no data yet"], "zone states carry the tick time: they are not data"
    hub.update([zone_state("seg-1", 10)], None, [], data_ts=T0)
    hub.set_status("broker", "connected")
    hub.set_status("ingest", {"accepted": 10, "rejected": {"bad json": 1}})
    hub.set_status("weird", object())
    h = hub.health()
    assert (h["status"], h["broker"], h["last_data_age_s"]) == ("ok", "connected", 0.0)
    assert h["ingest"] == {"accepted": 10, "rejected": {"bad json": 1}} and isinstance(h["weird"], str)
    clock.advance(61)
    hub.set_status("broker", "disconnected")
    h = hub.health()
    assert h["status"] == "degraded" and h["reasons"] == ["broker disconnected", "no data for 61 s"]


async def test_alert_from_a_zone_dropped_from_the_site_still_shows(hub: Hub) -> None:
    hub.update(
        [], None, [alert("old", zone="demolished-pier") | {"zone_name": "Old pier", "zone_name_zh": "旧码头"}]
    )
    view = hub.alert("old")
    assert view is not None and (view["zone_name_en"], view["zone_name_zh"]) == ("Old pier", "旧码头")


async def test_accepts_the_alerts_package_encoding(hub: Hub, mini_site: Site) -> None:
    """alerts/encode.alert_json gives level as a dict and times as *_ts: the hub reads it as it is."""
    a = Alert(
        id="A-1", zone="plaza", level=Level.I, peak_level=Level.I, cause="density", state="raised",
        opened_at=T0, updated_at=T0 + 30, message="4.2 people/m²",
    )  # fmt: skip
    b = Alert(
        id="A-2", zone="seg-1", level=Level.I, peak_level=Level.I, cause="capacity", state="raised",
        opened_at=T0, updated_at=T0 + 90,
    )  # fmt: skip
    hub.update([], None, [alert_json(a, mini_site), alert_json(b, mini_site)])
    views = hub.alerts()
    assert [v["id"] for v in views] == ["A-2", "A-1"]  # same level: newest change first
    assert (views[1]["level"], views[1]["level_label"], views[1]["zone_name_en"]) == (4, "I red", "Plaza")
    assert views[1]["updated_at"].startswith("2026-01-01T08:00:30")  # the alert's own fields are kept
