"""Smoke test of benchmarks/memory_where.py: four simulated hours of the district through the service's objects
in-process, tracemalloc snapshots every hour, and the sizes of its windows at the end. Checks the figures are
there and sane: the store's ring is allocated (35 zones), the hub holds deltas for resuming clients."""

from __future__ import annotations

from tests.benchmarks.quick import run_quick


def test_quick_run_prints_growth_and_window_sizes() -> None:
    pairs = run_quick("memory_where.py")
    assert pairs["sim_h"] == "4.0"
    assert int(pairs["store_ring_kb"]) > 0
    assert int(pairs["hub_resume_deltas"]) > 0 and int(pairs["hub_resume_kb"]) > 0
    float(pairs["traced_growth_kb"])  # a number, whatever its sign
