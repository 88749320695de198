"""The live path between ticks: readings reach the wall without waiting for the models, the models' verdict
stays that of the last tick, and a zone measured at I red ticks at once so its alert does not wait either."""

from __future__ import annotations

import json
from pathlib import Path

from crowdflow.service import write_snapshot
from dashboard.hub import Hub
from domain.clock import ManualClock
from domain.levels import Level
from domain.site import Site
from tests.crowdflow.test_pipeline_clock import pipeline
from tests.ingest.helpers import T0, count


def _feed(pipe: object, sensor: str, seq: int, ts: float, cin: int) -> None:
    topic, payload = count(sensor, seq, ts, cin, 0, interval_s=10.0)
    pipe.handle(topic, payload, ts)  # type: ignore[attr-defined]


def test_readings_reach_the_hub_between_ticks_with_the_last_ticks_level(mini_site: Site) -> None:
    clock = ManualClock(T0)
    hub = Hub(mini_site, batch_interval_s=0)
    with pipeline(mini_site, clock, hub=hub) as pipe:
        calls: list[int] = []
        pipe.on_dirty = lambda: calls.append(1)
        pipe.tick(T0)
        ticks, seq = pipe.ticks, hub.seq
        before = hub.zone("seg-2")
        assert before is not None and before["level"] == int(Level.NORMAL)

        clock.set(T0 + 1)
        _feed(pipe, "seg2-gate", 0, T0 + 1, 1500)  # 75%: II orange by measure, but II must hold 30 s first
        _feed(pipe, "seg2-gate", 1, T0 + 1, 0)
        assert calls == [1], "the service is asked once per push, not once per reading"
        pipe.live()

        after = hub.zone("seg-2")
        assert after is not None and after["occupancy"] == 1500.0
        assert after["level"] == int(Level.NORMAL), "between ticks the level is the models' (last tick), not raw"
        assert pipe.ticks == ticks and pipe.live_pushes == 1 and hub.seq == seq + 1
        district = hub.district
        assert district is not None and district["people_now"] >= 1500

        _feed(pipe, "seg2-gate", 2, T0 + 2, 10)
        assert calls == [1, 1], "after a push, the next reading asks for the next one"


def test_a_zone_measured_at_red_ticks_at_once_and_raises_its_alert(mini_site: Site) -> None:
    clock = ManualClock(T0)
    hub = Hub(mini_site, batch_interval_s=0)
    with pipeline(mini_site, clock, hub=hub) as pipe:
        pipe.tick(T0)
        ticks = pipe.ticks
        clock.set(T0 + 1)
        _feed(pipe, "seg2-gate", 0, T0 + 1, 1950)  # 97.5% of capacity: I red
        pipe.live()
        assert pipe.ticks == ticks + 1 and pipe.early_ticks == 1
        zone = hub.zone("seg-2")
        assert zone is not None and zone["level"] == int(Level.I)
        red = [a for a in hub.alerts() if a["zone"] == "seg-2" and a["level"] == int(Level.I)]
        assert red, "the red alert waited for the regular tick"

        clock.set(T0 + 2)
        _feed(pipe, "seg2-gate", 1, T0 + 2, 10)
        pipe.live()
        assert pipe.early_ticks == 1, "a zone already at I red does not tick again on every reading"


def test_no_live_push_without_readings_and_a_tick_takes_the_pending_zones(mini_site: Site) -> None:
    clock = ManualClock(T0)
    hub = Hub(mini_site, batch_interval_s=0)
    with pipeline(mini_site, clock, hub=hub) as pipe:
        pipe.tick(T0)
        seq = hub.seq
        pipe.live()
        assert hub.seq == seq and pipe.live_pushes == 0
        _feed(pipe, "seg2-gate", 0, T0 + 1, 100)
        clock.set(T0 + 5)
        pipe.tick(T0 + 5)  # the tick pushes every zone: nothing is left for the live path
        seq = hub.seq
        pipe.live()
        assert hub.seq == seq and pipe.live_pushes == 0


def test_snapshot_written_whole_and_read_back(mini_site: Site, tmp_path: Path) -> None:
    clock = ManualClock(T0)
    with pipeline(mini_site, clock) as pipe:
        _feed(pipe, "seg2-gate", 0, T0 + 1, 321)
        pipe.tick(T0 + 5)
        path = tmp_path / "state" / "state.json"
        write_snapshot(path, pipe.snapshot_text())
        assert not path.with_suffix(".tmp").exists()
        assert "engine" in json.loads(path.read_text())
    with pipeline(mini_site, clock) as fresh:
        assert fresh.load(path)
        states, _ = fresh.engine.tick(T0 + 6)
        assert {s.zone: s.occupancy for s in states}["seg-2"] == 321.0
