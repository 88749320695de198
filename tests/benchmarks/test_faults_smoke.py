"""Smoke test of benchmarks/faults.py: the script runs one fault (the sensor one, ~15 s) end to end against a
real Mosquitto and `crowdflow serve`, prints its table and ends with its key=value line. The faults themselves
are tested in tests/faults/ (the same `run` functions, at the same sizes as --quick)."""

from __future__ import annotations

import subprocess
import sys

from tests.benchmarks.quick import ROOT


def test_quick_run_of_one_fault_prints_the_table_and_the_summary_line() -> None:
    r = subprocess.run(
        [sys.executable, "benchmarks/faults.py", "--quick", "--only", "sensor"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    lines = r.stdout.strip().splitlines()
    pairs = dict(kv.split("=", 1) for kv in lines[-1].split())
    assert pairs == {"faults": "1", "lost": "0", "duplicated": "0", "alerts_missed": "0"}, lines[-1]
    header = next(line for line in lines if line.startswith("fault "))
    for column in ("sent", "received", "lost", "duplicated", "alerts exp.", "delivered", "dup. notif."):
        assert column in header, f"column {column!r} missing from the table: {header}"
    assert any(line.startswith("sensor clocks/burst/flood") for line in lines), r.stdout
