"""Hub pacing and reconnects: updates closer than the batch interval merge into one delta; a page that
reconnects within the same service run gets only the deltas it missed, otherwise a snapshot."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from dashboard.hub import Hub
from domain.clock import ManualClock
from domain.site import Site
from tests.dashboard.conftest import alert, district_state, zone_state


class Ticker:
    """Real time for the hub's pacing, moved by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _msg(text: str | None) -> dict[str, Any]:
    assert text is not None, "expected a message, got an idle timeout"
    out: dict[str, Any] = json.loads(text)
    return out


async def test_updates_within_the_interval_merge_into_one_delta_with_the_latest_views(
    mini_site: Site, clock: ManualClock
) -> None:
    mono = Ticker()
    hub = Hub(mini_site, clock=clock, batch_interval_s=0.25, monotonic=mono)
    feed = hub.subscribe()
    assert _msg(await feed.next(1))["type"] == "snapshot"
    hub.update([zone_state("seg-1", 100)], None, [])  # first after a quiet spell: sent at once
    assert _msg(await feed.next(1))["seq"] == 1
    for occ in (200, 300, 400):  # a 60x replay: three ticks within the same quarter second
        hub.update([zone_state("seg-1", occ), zone_state("plaza", occ / 10)], district_state(), [alert("a1")])
    hub.update([], None, [alert("a1", state="acknowledged")])
    assert feed.pending == 0 and hub.merged == 4  # nothing sent yet: a flush is scheduled
    mono.t += 0.25
    merged = _msg(await feed.next(2))  # the scheduled flush (a real 0.25 s loop timer)
    assert merged["seq"] == 2, "merged updates still take one seq: the page sees no gap"
    assert {z["id"]: z["occupancy"] for z in merged["zones"]} == {"seg-1": 400, "plaza": 40}
    assert [(a["id"], a["state"]) for a in merged["alerts"]] == [("a1", "acknowledged")]
    assert merged["district"]["people_now"] == 3100
    assert hub.health()["merged"] == 4


async def test_no_batching_sends_every_update(mini_site: Site, clock: ManualClock) -> None:
    hub = Hub(mini_site, clock=clock, batch_interval_s=0)
    feed = hub.subscribe()
    await feed.next(1)
    for occ in (1, 2, 3):
        hub.update([zone_state("seg-1", occ)], None, [])
    assert [_msg(await feed.next(1))["seq"] for _ in range(3)] == [1, 2, 3]


def _hub(mini_site: Site, clock: ManualClock, **kw: Any) -> Hub:
    return Hub(mini_site, clock=clock, batch_interval_s=0, **kw)


async def test_reconnect_within_the_window_gets_exactly_the_missed_deltas(mini_site: Site, clock: ManualClock) -> None:
    hub = _hub(mini_site, clock)
    first = hub.subscribe()
    snap = _msg(await first.next(1))
    assert snap["epoch"] == hub.epoch and len(hub.epoch) == 12
    hub.update([zone_state("seg-1", 10)], None, [])
    last_seen = _msg(await first.next(1))["seq"]
    hub.unsubscribe(first)  # the wall's network drops
    for occ in (20, 30, 40):
        hub.update([zone_state("seg-1", occ)], None, [])
    again = hub.subscribe(resume=(hub.epoch, last_seen))
    got = [_msg(await again.next(1)) for _ in range(3)]
    assert [(m["type"], m["seq"]) for m in got] == [("delta", 2), ("delta", 3), ("delta", 4)]
    assert [m["zones"][0]["occupancy"] for m in got] == [20, 30, 40]
    assert await again.next(0.05) is None and hub.resumed == 1  # nothing more: no snapshot resent


async def test_reconnect_gets_a_snapshot_after_a_restart_a_long_gap_or_a_bad_seq(
    mini_site: Site, clock: ManualClock
) -> None:
    hub = _hub(mini_site, clock, resume_window=2, client_queue=8)
    for occ in range(1, 6):
        hub.update([zone_state("seg-1", occ)], None, [])
    cases = {
        "other service run": ("0123456789ab", 4),
        "missed more than the window holds": (hub.epoch, 1),
        "seq from the future": (hub.epoch, 99),
    }
    for why, resume in cases.items():
        feed = hub.subscribe(resume=resume)
        assert _msg(await feed.next(1))["type"] == "snapshot", why
    up_to_date = hub.subscribe(resume=(hub.epoch, hub.seq))
    assert await up_to_date.next(0.05) is None, "a page that missed nothing gets nothing"
    assert hub.resumed == 1


async def test_more_missed_than_the_client_queue_holds_means_a_snapshot(mini_site: Site, clock: ManualClock) -> None:
    hub = _hub(mini_site, clock, client_queue=2)
    for occ in range(1, 5):
        hub.update([zone_state("seg-1", occ)], None, [])
    feed = hub.subscribe(resume=(hub.epoch, 0))
    assert _msg(await feed.next(1))["type"] == "snapshot"


async def test_close_all_cancels_a_scheduled_flush(mini_site: Site, clock: ManualClock) -> None:
    mono = Ticker()
    hub = Hub(mini_site, clock=clock, batch_interval_s=0.25, monotonic=mono)
    hub.update([zone_state("seg-1", 1)], None, [])
    hub.update([zone_state("seg-1", 2)], None, [])
    hub.close_all()
    await asyncio.sleep(0.3)
    assert hub.seq == 1, "no delta after shutdown"


async def test_the_resume_window_is_bounded_in_bytes(mini_site: Site, clock: ManualClock) -> None:
    hub = _hub(mini_site, clock, resume_bytes=3000)
    for occ in range(1, 40):
        hub.update([zone_state("seg-1", occ), zone_state("plaza", occ)], None, [])
    kept = [m.seq for m in hub._recent]
    assert 0 < sum(len(m.text) for m in hub._recent) == hub._recent.bytes <= 3000
    assert _msg(await hub.subscribe(resume=(hub.epoch, 1)).next(1))["type"] == "snapshot"  # forgotten: snapshot
    recent_seq = kept[0]
    resumed = hub.subscribe(resume=(hub.epoch, recent_seq - 1))
    assert _msg(await resumed.next(1))["seq"] == recent_seq


async def test_many_clients_stretch_the_interval_between_deltas_to_the_fan_out_budget(
    mini_site: Site, clock: ManualClock
) -> None:
    """Each delta costs one send per client on the ingest loop: with max_sends_per_s = 40 and 20 clients a
    delta may go out every 0.5 s, not every 0.05 s; when they leave, the short interval is back."""
    mono = Ticker()
    hub = Hub(mini_site, clock=clock, batch_interval_s=0.05, max_sends_per_s=40, monotonic=mono)
    feeds = [hub.subscribe() for _ in range(20)]
    for f in feeds:
        await f.next(1)
    assert hub.interval_s() == 0.5 and hub.health()["delta_interval_s"] == 0.5
    hub.update([zone_state("seg-1", 100)], None, [])  # first after a quiet spell: at once
    assert _msg(await feeds[0].next(1))["seq"] == 1
    hub.update([zone_state("seg-1", 200)], None, [])
    mono.t += 0.05
    assert await feeds[0].next(0.2) is None, "a delta went out before the budget allowed"
    mono.t += 0.45
    assert _msg(await feeds[0].next(1))["seq"] == 2
    for f in feeds[1:]:
        hub.unsubscribe(f)
    assert hub.interval_s() == 0.05
    with pytest.raises(ValueError, match="max_sends_per_s"):
        Hub(mini_site, max_sends_per_s=0)


async def test_the_fan_out_budget_holds_without_batching_too(mini_site: Site, clock: ManualClock) -> None:
    """push_interval_s 0 does not switch the budget off: 20 clients at 40 sends a second still wait 0.5 s; a
    budget under 10 ms (one client at 4,000 a second) leaves "every update at once" alone."""
    hub = Hub(mini_site, clock=clock, batch_interval_s=0, max_sends_per_s=40)
    for _ in range(20):
        hub.subscribe()
    assert hub.interval_s() == 0.5
    lone = Hub(mini_site, clock=clock, batch_interval_s=0, max_sends_per_s=4000)
    lone.subscribe()
    assert lone.interval_s() == 0.0
