"""How fast `crowdflow backtest` runs: a 1,000,000-row `timestamp,sensor_id,count` file, one core.

Generates 100 sensors x 10,000 minutes (about a week) of Poisson counts with a daily shape and one surge,
in a temporary directory, runs the backtest with the default surge detector (or --detector NAME) and
prints rows/s, ending with one machine-readable line:

    backtest_rows_per_s=N rows=N seconds=N

Usage: .venv/bin/python benchmarks/backtest_speed.py [--rows N] [--sensors N] [--detector NAME] [--site FILE]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detect.backtest.cli import run  # noqa: E402
from detect.registry import DEFAULT_SURGE  # noqa: E402


def make_input(path: Path, rows: int, sensors: int, seed: int = 7) -> None:
    """`timestamp,sensor_id,count` at 1-minute steps, sensors interleaved per timestamp as a logger writes."""
    rng = np.random.default_rng(seed)
    steps = rows // sensors
    minutes = np.arange(steps)
    hour = (minutes / 60.0) % 24
    shape = 5 + 20 * np.exp(-(((hour - 19) / 3) ** 2))  # an evening peak
    surge = np.where((minutes > steps * 0.7) & (minutes < steps * 0.7 + 90), 60.0, 0.0)
    lam = (shape + surge)[:, None] * rng.uniform(0.5, 1.5, size=sensors)[None, :]
    counts = rng.poisson(lam).ravel()
    start = pd.Timestamp("2024-03-04 00:00:00")
    stamps = (start + pd.to_timedelta(minutes, unit="min")).strftime("%Y-%m-%dT%H:%M:%S").to_numpy()
    ids = np.array([f"s{i:03d}" for i in range(sensors)], dtype=object)
    pd.DataFrame({"timestamp": np.repeat(stamps, sensors), "sensor_id": np.tile(ids, steps), "count": counts}).to_csv(
        path, index=False
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--detector", default=DEFAULT_SURGE)
    ap.add_argument("--site", help="site file (the generated sensor ids are not in it: each stays a series)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "counts.csv", Path(tmp) / "result.csv"
        t = time.perf_counter()
        make_input(src, args.rows, args.sensors)
        print(f"generated {args.rows:,} rows ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        argv = [str(src), "--out", str(out), "--detector", args.detector, "--progress", "always"]
        if args.site:
            argv += ["--site", args.site]
        summary = io.StringIO()
        t = time.perf_counter()
        rc = run(argv, stdout=summary, stderr=sys.stderr, clock=time.perf_counter)
        seconds = time.perf_counter() - t
        lines = summary.getvalue().splitlines()
        print("\n".join(lines[:3] + lines[-1:]))
        if rc != 0:
            print(f"backtest failed with exit code {rc}", file=sys.stderr)
            return rc
        written = sum(1 for _ in out.open()) - 1
    rate = written / seconds
    print(f"{args.detector}: {written:,} rows in {seconds:.1f} s = {rate:,.0f} rows/s (target: 1M rows < 60 s)")
    print(f"backtest_rows_per_s={rate:.0f} rows={written} seconds={seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
