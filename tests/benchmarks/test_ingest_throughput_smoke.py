"""Smoke test of benchmarks/ingest_throughput.py: the quick run (a real Mosquitto, `crowdflow serve` as a child
process, the bare consumers) drains every reading and ends with its key=value line. No timed assertion: the
rates are only checked to be there."""

from __future__ import annotations

from tests.benchmarks.quick import run_quick


def test_quick_run_loses_nothing_and_ends_with_key_values() -> None:
    pairs = run_quick("ingest_throughput.py")
    assert pairs["lost"] == "0"  # the service's ingest received every published reading
    assert pairs["rejected"] == "0"  # and accepted them: the feed is valid
    assert pairs["bare_lost"] == "0"
    for key in ("ingest_qos1_msgs_per_s", "bare_qos1_msgs_per_s", "paho_qos1_msgs_per_s", "c_qos1_msgs_per_s"):
        assert float(pairs[key]) > 0, key
    assert float(pairs["ratio"]) > 0
    assert pairs["sensors"] == "300"
