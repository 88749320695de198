"""The pipeline's tick as walls see it: no tick before simulated time is known and a replay of a past evening
still ticks; open alerts refreshed on walls without flooding them; the data clock stops with the data."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from alerts.escalation import Escalator
from alerts.journal import Journal
from alerts.manager import AlertManager
from alerts.measures import load_measures
from alerts.roster import load_roster
from alerts.routing import Router
from crowdflow.service import Pipeline
from crowdflow.simclock import SimClock
from dashboard.hub import Hub
from detect.overrides import Overrides
from domain.clock import Clock, ManualClock
from domain.levels import Level
from domain.site import Site
from domain.values import Detection, ZoneState
from store.embedded import EmbeddedStore

ROSTER = Path(__file__).parents[1] / "fixtures" / "mini_roster.toml"
WALL = dt.datetime(2027, 3, 1, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
REPLAY = dt.datetime(2025, 12, 31, 22, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()  # long before WALL


@contextmanager
def pipeline(
    site: Site, clock: Clock, *, hub: Hub | None = None, publish: Callable[[str, bytes, bool], bool] | None = None
) -> Iterator[Pipeline]:
    """A Pipeline with the mini roster's alert manager, an in-memory journal and store, closed afterwards."""
    roster = load_roster(ROSTER, site)
    journal = Journal(":memory:")
    manager = AlertManager(
        site, journal=journal, router=Router(roster, site), escalator=Escalator(roster.policy),
        measures=load_measures(), overrides=Overrides(site), clock=clock, submit=lambda n: True,
    )  # fmt: skip
    store = EmbeddedStore(None)
    try:
        yield Pipeline(
            site, clock=clock, store=store, hub=hub or Hub(site, batch_interval_s=0),
            publish=publish or (lambda t, p, r: True), alerts=manager, tick_s=5.0,
        )  # fmt: skip
    finally:
        store.close()
        journal.close()


def test_no_tick_before_sim_time_and_a_past_evening_still_ticks(mini_site: Site) -> None:
    clock = SimClock(ManualClock(WALL))
    with pipeline(mini_site, clock) as pipe:
        pipe.maybe_tick()
        assert pipe.ticks == 0 and pipe.next_tick is None  # wall time must not schedule the replay's ticks
        for i in range(4):
            clock.feed(json.dumps({"epoch": REPLAY + 5.0 * i}).encode())
            pipe.maybe_tick()
        assert pipe.ticks >= 2, "a replay of an evening before the wall clock never ticked"
        assert pipe.next_tick is not None and pipe.next_tick < WALL


def test_walls_see_fresh_evidence_at_the_same_level_and_mqtt_only_lifecycle_changes(mini_site: Site) -> None:
    clock = ManualClock(WALL)
    hub = Hub(mini_site, batch_interval_s=0)
    published: list[str] = []

    def publish(topic: str, payload: bytes, retain: bool) -> bool:
        published.append(topic)
        return True

    with pipeline(mini_site, clock, hub=hub, publish=publish) as pipe:

        def tick_with(occupancy: float) -> None:
            ts = clock.now()
            share = occupancy / 2000
            state = ZoneState(zone="seg-1", ts=ts, occupancy=occupancy, capacity=2000, share=share,
                              density=share, inflow_per_min=100, outflow_per_min=50, arrivals_today=0)  # fmt: skip
            det = Detection(zone="seg-1", ts=ts, level=Level.II, cause="capacity",
                            evidence={"occupancy": occupancy}, message=f"seg-1 at {occupancy:.0f}")  # fmt: skip
            pipe.engine.tick = lambda now: ([state], [det])  # type: ignore[method-assign]
            pipe.tick(ts)

        tick_with(1640)
        (alert,) = hub.alerts()
        alert_topics = [t for t in published if t.startswith("crowdflow/alerts/")]
        clock.advance(5)
        tick_with(1700)
        assert (hub.alert(alert["id"]) or {})["message"] == "seg-1 at 1640", "same level: not resent every tick"
        clock.advance(pipe.refresh_s - 5)
        tick_with(1720)
        assert (hub.alert(alert["id"]) or {})["message"] == "seg-1 at 1720", "the wall kept the raise-time text"
        assert [t for t in published if t.startswith("crowdflow/alerts/")] == alert_topics, "same level: no MQTT"


def test_the_wall_sees_the_stream_stop_although_ticks_go_on(mini_site: Site) -> None:
    """States are stamped with the tick time; only readings may count as fresh data (found in review)."""
    wall = ManualClock(WALL)
    hub = Hub(mini_site, clock=wall, batch_interval_s=0, stale_after_s=60)
    with pipeline(mini_site, wall, hub=hub) as pipe:
        pipe.tick(wall.now())
        assert hub.health()["reasons"] == ["no data yet"], "ticks without readings are not data"
        stamp = dt.datetime.fromtimestamp(WALL, ZoneInfo("Asia/Shanghai")).isoformat()
        reading = {"v": 1, "sensor": "seg1-west", "ts": stamp, "seq": 1, "interval_s": 60, "in": 10, "out": 2}
        pipe.handle("dt/crowdflow/riverside/seg-1/seg1-west/count", json.dumps(reading).encode(), wall.now())
        pipe.tick(wall.now())
        assert hub.data_ts == WALL and hub.health()["status"] == "ok"
        for _ in range(24):  # two minutes of ticks, no readings
            wall.advance(5)
            pipe.tick(wall.now())
        assert hub.data_ts == WALL, "the data clock must stop with the data"
        health = hub.health()
        assert health["status"] == "degraded" and health["reasons"] == ["no data for 120 s"]
        assert hub.snapshot()["last_data_age_s"] == 120.0
