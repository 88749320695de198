"""Micro-benchmark of the per-message ingest path. Prints µs/msg; no timing assertion (machines differ)."""

from __future__ import annotations

import time

import pytest

from ingest.pipeline import Ingestor
from tests.ingest.helpers import T0, count, site_with_area, total

N = 20_000


def test_feed_cost_per_message(capsys: pytest.CaptureFixture[str]) -> None:
    site = site_with_area()
    counts = [count("seg1-west", i + 1, T0 + 60 * i, 3, 2) for i in range(N)]
    totals = [total("seg1-east", i + 1, T0 + 60 * i, 10 * i, 5 * i) for i in range(N)]
    results = {}
    for name, msgs in (("interval count", counts), ("running total", totals)):
        ing = Ingestor(site, max_age_s=1e9, max_future_s=1e9)
        released = 0
        start = time.perf_counter()
        for t, p in msgs:
            released += len(ing.feed(t, p, T0))
        results[name] = (time.perf_counter() - start) / N * 1e6
        assert released >= N - 1 and ing.stats.rejected == {}
    with capsys.disabled():
        print("\n" + ", ".join(f"Ingestor.feed {k}: {v:.2f} µs/msg" for k, v in results.items()))
