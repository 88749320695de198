"""The detector loop: what a detector sees, guarded learning, levels, and the alert lifecycle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detect.backtest.reader import read_input
from detect.backtest.runner import levels_of, run_backtest
from detect.base import Decision
from domain.levels import Level
from domain.profile import CapacityProfile
from domain.site import Site
from tests.detect.backtest.helpers import EWZ, Threshold, minutes_csv, write


def test_detector_sees_value_per_minute_slot_day_type_and_no_expectation(tmp_path: Path) -> None:
    # 30-second counts of 10 are 20 per minute; 2024-03-04 is a Monday, 2024-03-09 a Saturday.
    p = write(
        tmp_path,
        "half.csv",
        "timestamp,value\n2024-03-04T08:00:00,10\n2024-03-04T08:00:30,10\n2024-03-04T08:01:00,5\n"
        "2024-03-09T23:59:30,4\n",
    )
    seen: list[Threshold] = []

    def factory() -> Threshold:
        seen.append(Threshold())
        return seen[-1]

    run_backtest(read_input(p), factory)
    obs = seen[0].seen
    assert [(o.value, o.slot, o.day_type, o.expected) for o in obs] == [
        (20.0, 32, "weekday", None),
        (20.0, 32, "weekday", None),
        (10.0, 32, "weekday", None),
        (8.0, 95, "holiday", None),
    ]
    assert obs[0].ts == 1709510400.0


def test_zone_series_get_the_profile_expectation_and_a_fresh_detector_each(tmp_path: Path, mini_site: Site) -> None:
    p = write(
        tmp_path,
        "z.csv",
        "timestamp,sensor_id,count\n2024-03-04T08:00:00,plaza-gate,6\n2024-03-04T08:00:00,seg2-gate,3\n"
        "2024-03-04T08:01:00,plaza-gate,6\n2024-03-04T08:01:00,odd,1\n",
    )
    made: list[Threshold] = []

    def factory() -> Threshold:
        made.append(Threshold())
        return made[-1]

    rec = read_input(p, site=mini_site)
    run_backtest(rec, factory, site=mini_site)
    assert len(made) == 3  # odd, plaza, seg-2
    by_series = dict(zip(rec.names, made, strict=True))
    prof = CapacityProfile(mini_site)
    assert by_series["plaza"].seen[0].expected == prof.expected_rate_per_min("plaza", 1709510400.0)
    assert by_series["seg-2"].seen[0].expected == prof.expected_rate_per_min("seg-2", 1709510400.0)
    assert by_series["odd"].seen[0].expected is None


def test_flagged_rows_are_not_learned(tmp_path: Path) -> None:
    det = Threshold(at=50)
    run_backtest(read_input(minutes_csv(tmp_path, "s.csv", [10, 60, 10, 70, 10])), lambda: det)
    assert [o.value for o in det.learned] == [10.0, 10.0, 10.0]


def test_levels_from_scores() -> None:
    s = np.array([0.0, 0.89, 0.9, 0.969, 0.97, 0.98, 0.995, 1.0])
    assert [Level(v).label for v in levels_of(s, Decision()).tolist()] == [
        "normal", "normal", "IV blue", "IV blue", "III yellow", "III yellow", "III yellow", "III yellow",
    ]  # fmt: skip
    # A stricter threshold is never below its own band.
    assert levels_of(np.array([0.96]), Decision(threshold=0.975)).tolist() == [0]


def test_alert_opens_when_flagged_and_closes_after_n_quiet_intervals(tmp_path: Path) -> None:
    v = [0, 60, 0, 60, 0, 0, 0, 0, 60, 60, 0, 0, 0]
    rec = read_input(minutes_csv(tmp_path, "a.csv", v))
    res = run_backtest(rec, Threshold, close_after=3)
    ids = [res.alerts[i].id if i >= 0 else "" for i in res.alert.tolist()]
    # One quiet row between flags keeps the alert; three quiet intervals after the last flag close it.
    assert ids == ["", "a#1", "a#1", "a#1", "a#1", "a#1", "", "", "a#2", "a#2", "a#2", "a#2", ""]
    a1, a2 = res.alerts
    t0 = rec.ts[0]
    assert (a1.start - t0, a1.last_flagged - t0, a1.end - t0, a1.flagged_rows) == (60, 180, 300, 2)
    assert (a2.start - t0, a2.end - t0, a2.peak_level) == (480, 660, Level.III)


def test_a_gap_counts_as_quiet_time(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "g.csv",
        "timestamp,value\n2024-03-04T08:00:00,60\n2024-03-04T08:01:00,60\n2024-03-04T08:02:00,60\n"
        "2024-03-04T08:10:00,60\n2024-03-04T08:11:00,0\n",
    )
    res = run_backtest(read_input(p), Threshold, close_after=3)
    assert [a.id for a in res.alerts] == ["g#1", "g#2"]
    assert res.alert.tolist() == [0, 0, 0, 1, 1]


def test_scores_are_clipped_and_nonfinite_counted(tmp_path: Path) -> None:
    class Wild(Threshold):
        def score_one(self, x):  # type: ignore[no-untyped-def]
            return {10.0: float("nan"), 20.0: 7.0}.get(x.value, -1.0)

    res = run_backtest(read_input(minutes_csv(tmp_path, "w.csv", [10, 20, 30])), Wild)
    assert res.score.tolist() == [0.0, 1.0, 0.0] and res.nonfinite_scores == 1


def test_an_ew_zscore_detector_flags_a_step_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    v = list(rng.poisson(20, 300)) + [80] * 20 + list(rng.poisson(20, 50))
    res = run_backtest(read_input(minutes_csv(tmp_path, "e.csv", [float(x) for x in v])), EWZ)
    assert len(res.alerts) >= 1
    first = min(a.start for a in res.alerts if a.peak_score > 0.95)
    assert first == read_input(minutes_csv(tmp_path, "e.csv", [float(x) for x in v])).ts[300]
