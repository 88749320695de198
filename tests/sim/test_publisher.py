from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from domain.site import Site
from sim.mqtt import BrokerUnavailable, Pacer
from sim.publisher import RunSummary, iter_messages, load_scenario, run_scenario
from sim.scenario import Scenario
from tests.servers import Server, free_port
from tests.sim.mqtt_helpers import Collector


def publish(site: Site, scenario: Scenario, broker: Server, *, speed: float = 0, **kw: Any) -> RunSummary:
    """run_scenario on the test broker, no truth files and no progress line unless asked."""
    kw.setdefault("out_dir", None)
    return run_scenario(site, scenario, host=broker.host, port=broker.port, speed=speed, progress=False, **kw)


def test_every_message_reaches_a_qos1_subscriber(mosquitto: Server, mini_site: Site, tmp_path: Path) -> None:
    sc = load_scenario("faults")
    msgs = list(iter_messages(mini_site, sc))
    expected = [(m.topic, m.payload) for m in msgs]
    sub = Collector(mosquitto.host, mosquitto.port)
    try:
        s = publish(mini_site, sc, mosquitto, out_dir=tmp_path)
        assert s.messages == s.acked == len(expected) > 1000
        assert sub.wait_for(len(expected)) == len(expected)
        assert Counter(sub.received) == Counter(expected)  # duplicates and malformed ones included
        assert s.malformed == sum(m.malformed for m in msgs) > 0
        assert s.duplicates > 0 and not s.stopped
        assert (tmp_path / "truth_summary.json").exists() and (tmp_path / "truth_windows.csv").exists()
        assert s.truth["messages"] == len(expected)
    finally:
        sub.close()


def test_window_of_the_real_site_at_full_speed(mosquitto: Server, tmp_path: Path) -> None:
    from domain.loader import load_site

    site = load_site()
    sub = Collector(mosquitto.host, mosquitto.port)
    try:
        s = publish(site, load_scenario("nye"), mosquitto, start="23:50", duration_s=600)
        assert (
            sub.wait_for(s.messages) == s.messages == s.acked == 1882
        )  # 89 minutely + 43 half-minutely sensors, 132 statuses
        assert s.sim_start == "2026-12-31T23:50:00+08:00" and s.sim_reached == "2027-01-01T00:00:00+08:00"
    finally:
        sub.close()


def test_speed_paces_simulated_time(mosquitto: Server, mini_site: Site) -> None:
    s = publish(mini_site, load_scenario("weekday"), mosquitto, speed=240, start="12:00", duration_s=240)
    assert s.wall_s >= 0.9  # four simulated minutes at 240x take (at least) one second: it is paced
    assert s.messages == 4 * 5 + 5  # five minutely sensors at 12:00-12:03, and their status


def test_stop_event_ends_a_run_early(mosquitto: Server, mini_site: Site) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    s = publish(mini_site, load_scenario("weekday"), mosquitto, speed=600, stop=stop)
    assert s.stopped
    assert s.sim_reached < s.sim_end


def test_broker_restart_loses_nothing(mosquitto: Server, mini_site: Site) -> None:
    sc = load_scenario("holiday")
    expected = [(m.topic, m.payload) for m in iter_messages(mini_site, sc, start="19:00", duration_s=3600)]
    sub = Collector(mosquitto.host, mosquitto.port, client_id="restart-collector")

    def bounce() -> None:
        time.sleep(0.8)
        mosquitto.stop()
        time.sleep(0.5)
        mosquitto.start()

    t = threading.Thread(target=bounce)
    t.start()
    try:
        s = publish(mini_site, sc, mosquitto, speed=1800, start="19:00", duration_s=3600)
        t.join()
        assert s.reconnects >= 1
        # Everything buffered while the broker was away was re-sent and acknowledged by it (PUBACK).
        assert s.messages == s.acked == len(expected)
        # End to end, what a subscriber gets after the restart depends on whether it reconnects before the
        # publisher does (the broker drops messages for a session it has not restored yet), so only check
        # that nothing arrives that was not sent.
        sub.wait_for(len(expected), timeout_s=2.0)
        assert set(sub.received) <= set(expected)
    finally:
        t.join()
        sub.close()


def test_no_broker_is_a_clear_error(mini_site: Site) -> None:
    port = free_port()
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}"):
        run_scenario(
            mini_site,
            load_scenario("weekday"),
            host="127.0.0.1",
            port=port,
            speed=0,
            out_dir=None,
            progress=False,
            connect_timeout_s=1.0,
        )


def test_pacer_follows_the_simulated_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    p = Pacer(60.0, 1_000_000.0, now=lambda: now[0], sleep=sleep)
    assert p.wait_until(1_000_060.0)
    assert now[0] == pytest.approx(101.0)
    assert p.wait_until(1_000_030.0) and now[0] == pytest.approx(101.0)  # already due: no wait
    with pytest.raises(ValueError, match="speed"):
        Pacer(-1, 0)
