"""Smoke test of benchmarks/latency.py: the quick run (a real Mosquitto, `crowdflow serve` as configured, a
paced publisher and a /ws client) sees every reading reflected in a pushed zone state, the surge's alert
pushed, and ends with its key=value line. No timed assertion: latencies are only checked to be there."""

from __future__ import annotations

from tests.benchmarks.quick import run_quick


def test_quick_run_reflects_every_reading_and_ends_with_key_values() -> None:
    pairs = run_quick("latency.py")
    assert pairs["lost"] == "0"  # every reading reached the service and showed in a pushed zone state
    for key in ("p50_ms", "p95_ms", "p99_ms", "p99_5x_ms", "p99_10x_ms", "alert_p50_ms"):
        assert float(pairs[key]) >= 0, key
    assert float(pairs["p50_ms"]) <= float(pairs["p99_ms"])
    assert "ticks_only_p99_ms" not in pairs  # the quick run is the configured one only
