"""Smoke test of benchmarks/detection.py: the quick suite runs end to end (sim → ingest → detect) and
reports what it promises, in process, in a few seconds."""

from __future__ import annotations

import io

from benchmarks.detection import main, run

KEYS = {
    "crossings",
    "warned",
    "median_lead_min",
    "worst_lead_min",
    "buildup_median_lead_min",
    "fa_per_zone_day",
    "baseline_warned",
    "baseline_median_lead_min",
    "baseline_fa_per_zone_day",
}


def test_quick_suite_warns_every_crossing_and_ends_with_key_values() -> None:
    out, err = io.StringIO(), io.StringIO()
    figs = run(quick=True, out=out, err=err)
    assert set(figs) >= KEYS
    assert int(figs["crossings"]) > 0
    assert figs["warned"] == figs["crossings"]  # NYE build-up and gathering: every crossing warned
    assert float(figs["buildup_median_lead_min"]) >= 15.0
    assert float(figs["fa_per_zone_day"]) <= 1.0
    last = out.getvalue().strip().splitlines()[-1]
    pairs = dict(kv.split("=", 1) for kv in last.split())
    assert set(pairs) >= KEYS
    assert {k: float(v) for k, v in pairs.items()} == {k: float(v) for k, v in figs.items()}
    assert "running nye" in err.getvalue()  # progress goes to stderr, not into the parsed output


def test_main_rejects_an_unknown_detector() -> None:
    err = io.StringIO()
    try:
        main(["--quick", "--detector", "nope"], out=io.StringIO(), err=err)
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("argparse should refuse an unknown detector")
