"""Smoke test of benchmarks/soak.py: the quick soak (a real Mosquitto, `crowdflow serve` on the simulated clock,
two simulated days of the district: 30 December and New Year's Eve, sensors reporting 4x less often, a tick
every 300 s) takes every reading, empties its queues, stops cleanly and logs no error. No timed assertion."""

from __future__ import annotations

from tests.benchmarks.quick import run_quick


def test_two_simulated_days_every_reading_accounted_for_queues_empty_no_errors() -> None:
    pairs = run_quick("soak.py")
    assert pairs["days"] == "2" and pairs["sim_days_done"] == "2"
    assert int(pairs["readings"]) > 100_000  # two days of 132 sensors at a quarter of their rate
    assert pairs["lost"] == "0" and pairs["received"] == pairs["readings"]  # published = received
    assert int(pairs["accepted"]) + int(pairs["rejected"]) == int(pairs["received"])
    assert pairs["queues_end"] == "0"  # backlog, held readings, store: all empty after the last reading
    assert pairs["errors"] == "0" and pairs["log_lines"] == "0"
    assert pairs["exit_code"] == "0"  # SIGTERM: flushed, snapshotted, stopped
    assert float(pairs["rss_end_mb"]) > 0 and float(pairs["rss_start_mb"]) > 0
