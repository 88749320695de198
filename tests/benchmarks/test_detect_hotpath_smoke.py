"""Smoke test of benchmarks/detect_hotpath.py: the quick run (200 and 1,000 sensors, each in its own process)
builds the engine, runs the stuck scenario and times Pipeline.handle, and ends with its key=value line. No
threshold is asserted: the figures are only checked to be there and sane."""

from __future__ import annotations

from tests.benchmarks.quick import run_quick


def test_quick_run_ends_with_key_values() -> None:
    pairs = run_quick("detect_hotpath.py")
    for n in (200, 1000):
        assert float(pairs[f"handle_us_{n}"]) > 0
        assert float(pairs[f"handle_cpu_us_{n}"]) > 0
        assert float(pairs[f"construct_s_{n}"]) >= 0
        assert float(pairs[f"tick_ms_{n}"]) >= 0
        assert float(pairs[f"health_kb_per_sensor_{n}"]) > 0
        assert float(pairs[f"flows_kb_per_sensor_{n}"]) > 0
        # Half the sensors repeat themselves while the rest move: sensor health finds stuck ones.
        assert int(pairs[f"stuck_{n}"]) > 0
        assert len(pairs[f"stuck_digest_{n}"]) == 10
