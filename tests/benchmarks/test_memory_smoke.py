"""Smoke test of benchmarks/memory.py: the quick run (a real Mosquitto, `crowdflow serve` on the simulated
clock, 2 simulated hours at 300 sensors from 23:00, across midnight, then the detection models under
tracemalloc) takes every reading, samples RSS along the way and ends with its key=value line. No threshold is
asserted: the figures are only checked to be there and sane."""

from __future__ import annotations

from tests.benchmarks.quick import run_quick


def test_quick_run_takes_every_reading_across_midnight_and_ends_with_key_values() -> None:
    pairs = run_quick("memory.py")
    assert pairs["lost"] == "0"
    assert float(pairs["sim_h_300"]) == 2.0  # the whole run was published and taken: midnight was crossed
    start, plateau, end = (float(pairs[f"{k}_300"]) for k in ("rss_start_mb", "rss_plateau_mb", "rss_mb"))
    assert min(start, plateau, end) > 0
    assert 0 <= float(pairs["plateau_h_300"]) <= 2.0
    float(pairs["slope_mb_per_h_300"])  # a number, whatever its sign
    assert float(pairs["detect_kb_per_zone"]) > 0
    assert float(pairs["detect_kb_per_sensor"]) >= 0
    assert any(k.startswith("surge_kb_per_zone_") for k in pairs)
