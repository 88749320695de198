"""The pipeline under a simulator's clock: no tick before simulated time is known, and a replay of an evening
that lies in the wall clock's past still ticks (found in review: ticks were scheduled from wall time)."""

from __future__ import annotations

import datetime as dt
import json
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
from domain.clock import ManualClock
from domain.site import Site
from store.embedded import EmbeddedStore

ROSTER = Path(__file__).parents[1] / "fixtures" / "mini_roster.toml"
WALL = dt.datetime(2027, 3, 1, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
REPLAY = dt.datetime(2025, 12, 31, 22, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()  # long before WALL


def test_no_tick_before_sim_time_and_a_past_evening_still_ticks(mini_site: Site) -> None:
    clock = SimClock(ManualClock(WALL))
    roster = load_roster(ROSTER, mini_site)
    journal = Journal(":memory:")
    manager = AlertManager(
        mini_site, journal=journal, router=Router(roster, mini_site), escalator=Escalator(roster.policy),
        measures=load_measures(), overrides=Overrides(mini_site), clock=clock, submit=lambda n: True,
    )  # fmt: skip
    store = EmbeddedStore(None)
    pipe = Pipeline(
        mini_site, clock=clock, store=store, hub=Hub(mini_site), publish=lambda t, p, r: True, alerts=manager,
        tick_s=5.0,
    )  # fmt: skip
    pipe.maybe_tick()
    assert pipe.ticks == 0 and pipe.next_tick is None  # wall time must not schedule the replay's ticks
    for i in range(4):
        clock.feed(json.dumps({"epoch": REPLAY + 5.0 * i}).encode())
        pipe.maybe_tick()
    assert pipe.ticks >= 2, "a replay of an evening before the wall clock never ticked"
    assert pipe.next_tick is not None and pipe.next_tick < WALL
    store.close()
    journal.close()


def test_walls_see_fresh_evidence_at_the_same_level_and_mqtt_only_lifecycle_changes(mini_site: Site) -> None:
    from domain.levels import Level
    from domain.values import Detection, ZoneState

    clock = ManualClock(WALL)
    roster = load_roster(ROSTER, mini_site)
    journal = Journal(":memory:")
    manager = AlertManager(
        mini_site, journal=journal, router=Router(roster, mini_site), escalator=Escalator(roster.policy),
        measures=load_measures(), overrides=Overrides(mini_site), clock=clock, submit=lambda n: True,
    )  # fmt: skip
    store = EmbeddedStore(None)
    hub = Hub(mini_site, batch_interval_s=0)
    published: list[str] = []
    pipe = Pipeline(
        mini_site, clock=clock, store=store, hub=hub, publish=lambda t, p, r: published.append(t) or True,
        alerts=manager, tick_s=5.0,
    )  # fmt: skip

    def scripted(occupancy: float) -> None:
        ts = clock.now()
        share = occupancy / 2000
        state = ZoneState(zone="seg-1", ts=ts, occupancy=occupancy, capacity=2000, share=share, density=share,
                          inflow_per_min=100, outflow_per_min=50, arrivals_today=0)  # fmt: skip
        det = Detection(zone="seg-1", ts=ts, level=Level.II, cause="capacity", evidence={"occupancy": occupancy},
                        message=f"seg-1 at {occupancy:.0f}")  # fmt: skip
        pipe.engine.tick = lambda now: ([state], [det])  # type: ignore[method-assign]

    scripted(1640)
    pipe.tick(clock.now())
    (alert,) = hub.alerts()
    alert_topics = [t for t in published if t.startswith("crowdflow/alerts/")]
    clock.advance(5)
    scripted(1700)
    pipe.tick(clock.now())
    shown = hub.alert(alert["id"])
    assert shown is not None and shown["message"] == "seg-1 at 1640", "same level: not resent every tick"
    clock.advance(pipe.refresh_s - 5)
    scripted(1720)
    pipe.tick(clock.now())
    shown = hub.alert(alert["id"])
    assert shown is not None and shown["message"] == "seg-1 at 1720", "the wall kept the raise-time text"
    assert [t for t in published if t.startswith("crowdflow/alerts/")] == alert_topics, "same level: no MQTT"
    store.close()
    journal.close()


def test_the_wall_sees_the_stream_stop_although_ticks_go_on(mini_site: Site) -> None:
    """States are stamped with the tick time; only readings may count as fresh data (found in review)."""
    from domain.clock import ManualClock as Wall

    wall = Wall(WALL)
    roster = load_roster(ROSTER, mini_site)
    journal = Journal(":memory:")
    manager = AlertManager(
        mini_site, journal=journal, router=Router(roster, mini_site), escalator=Escalator(roster.policy),
        measures=load_measures(), overrides=Overrides(mini_site), clock=wall, submit=lambda n: True,
    )  # fmt: skip
    store = EmbeddedStore(None)
    hub = Hub(mini_site, clock=wall, batch_interval_s=0, data_from_states=False, stale_after_s=60)
    pipe = Pipeline(
        mini_site, clock=wall, store=store, hub=hub, publish=lambda t, p, r: True, alerts=manager, tick_s=5.0,
    )  # fmt: skip
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
    store.close()
    journal.close()
