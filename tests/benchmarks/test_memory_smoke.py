"""Smoke test of benchmarks/memory.py: the quick run (a real Mosquitto, `crowdflow serve` on the simulated
clock, 10 simulated minutes at 300 sensors, then the detection models under tracemalloc) takes every reading,
samples RSS and ends with its key=value line. No threshold is asserted: the figures are only checked to be
there and sane."""

from __future__ import annotations

from tests.benchmarks.quick import run_quick


def test_quick_run_takes_every_reading_and_ends_with_key_values() -> None:
    pairs = run_quick("memory.py")
    assert pairs["lost"] == "0"
    assert float(pairs["rss_mb_300"]) > 0
    float(pairs["slope_mb_per_h_300"])  # a number, whatever its sign
    assert float(pairs["detect_kb_per_zone"]) > 0
    assert float(pairs["detect_kb_per_sensor"]) >= 0
    assert any(k.startswith("surge_kb_per_zone_") for k in pairs)
