"""Label windows and the metrics on a hand-made series whose answers are worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from detect.backtest.labels import evaluate, read_windows
from detect.backtest.reader import InputError, read_input
from detect.backtest.runner import run_backtest
from tests.detect.backtest.helpers import Threshold, minutes_csv, write

TZ = "Asia/Shanghai"


def surge_values() -> list[float]:
    """08:00..11:59 at 1-minute steps, 10 per minute; one stray spike at 08:30; a surge 10:00..10:29."""
    v = [10.0] * 240
    v[30] = 60.0
    for i in range(120, 150):
        v[i] = 60.0
    return v


def test_recall_precision_lead_time_and_false_alarms_by_hand(tmp_path: Path) -> None:
    rec = read_input(minutes_csv(tmp_path, "lab.csv", surge_values()))
    res = run_backtest(rec, Threshold)
    assert [a.id for a in res.alerts] == ["lab#1", "lab#2"]
    labels = write(tmp_path, "w.csv", "series,start,end,crossing\nlab,2024-03-04 10:20,2024-03-04 11:00,10:40\n")
    with pytest.raises(InputError, match="line 2: crossing: cannot read timestamp '10:40'"):
        read_windows(labels, TZ)
    labels = write(
        tmp_path,
        "w.csv",
        "series,start,end,crossing\nlab,2024-03-04 10:20,2024-03-04 11:00,2024-03-04T02:40:00Z\n",
    )
    ev = evaluate(rec, res.alerts, read_windows(labels, TZ))
    m = ev.overall
    # The surge alert opens at 10:00: 20 min before the window's start, 40 min before the crossing (10:40
    # local). The 08:30 spike is more than 60 min before 10:20, so it is a false alarm. 240 rows = 1/6 day.
    assert (m.windows, m.detected, m.recall) == (1, 1, 1.0)
    assert (m.alerts, m.matched_alerts, m.precision) == (2, 1, 0.5)
    assert m.median_lead_min == 20.0 and m.median_crossing_lead_min == 40.0
    assert (m.crossings, m.warned_before_crossing) == (1, 1)
    assert m.false_alarms == 1 and m.fa_per_day == pytest.approx(6.0)
    assert [s.series for s in ev.per_series] == ["lab"]


def test_an_alert_up_to_the_lead_zone_counts_and_a_late_one_has_negative_lead(tmp_path: Path) -> None:
    rec = read_input(minutes_csv(tmp_path, "lab.csv", surge_values()))
    res = run_backtest(rec, Threshold)
    # Window starting 09:40: the 08:30 spike alert (ending 08:32) is 68 min before: outside 60 min.
    w = write(tmp_path, "w.csv", "series,start,end\nlab,2024-03-04 09:40,2024-03-04 09:50\n")
    ev = evaluate(rec, res.alerts, read_windows(w, TZ))
    assert ev.overall.detected == 0 and ev.overall.recall == 0.0
    ev = evaluate(rec, res.alerts, read_windows(w, TZ), lead_s=70 * 60)
    assert ev.overall.detected == 1 and ev.overall.median_lead_min == 70.0
    # Window starting 09:50 but the alert only at 10:00: detected late, lead -10 min.
    w = write(tmp_path, "w.csv", "series,start,end\nlab,2024-03-04 09:50,2024-03-04 10:30\n")
    ev = evaluate(rec, res.alerts, read_windows(w, TZ))
    assert ev.overall.detected == 1 and ev.overall.median_lead_min == -10.0


def test_an_empty_series_applies_to_every_series_and_unknown_ones_are_listed(tmp_path: Path) -> None:
    body = "".join(
        f"2024-03-04T{8 + i // 60:02d}:{i % 60:02d}:00,{s},{60 if (s == 'a' and 120 <= i < 130) else 10}\n"
        for i in range(240)
        for s in ("a", "b")
    )
    rec = read_input(write(tmp_path, "c.csv", "timestamp,sensor_id,count\n" + body))
    res = run_backtest(rec, Threshold)
    w = write(
        tmp_path,
        "w.csv",
        "series,start,end\n,2024-03-04 10:10,2024-03-04 10:40\nghost,2024-03-04 10:10,2024-03-04 10:40\n"
        "b,2024-03-05 10:00,2024-03-05 11:00\n",
    )
    ev = evaluate(rec, res.alerts, read_windows(w, TZ))
    per = {m.series: m for m in ev.per_series}
    assert (per["a"].windows, per["a"].detected, per["a"].median_lead_min) == (1, 1, 10.0)
    assert (per["b"].windows, per["b"].detected, per["b"].recall) == (1, 0, 0.0)
    assert ev.overall.recall == 0.5 and ev.overall.precision == 1.0 and ev.overall.false_alarms == 0
    assert [w.series for w in ev.unknown_series] == ["ghost"]
    assert [(name, w.line) for name, w in ev.without_data] == [("b", 4)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: empty labels file"),
        ("zone,from,to\n", "line 1: labels header 'zone,from,to' must be series,start,end"),
        ("series,start,end\na,2024-03-04 10:00\n", "line 2: expected 3 fields, saw 2"),
        ("series,start,end\n\na,2024-03-04 10:00,soon\n", "line 3: end: cannot read timestamp 'soon'"),
        ("series,start,end\na,2024-03-04 10:00,2024-03-04 09:00\n", "line 2: end is before start"),
    ],
)
def test_bad_label_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_windows(write(tmp_path, "w.csv", text), TZ)


def test_windows_read_offsets_epoch_and_naive_local(tmp_path: Path) -> None:
    w = write(
        tmp_path,
        "w.csv",
        "series,start,end\na,2024-03-04 08:00,2024-03-04T00:30:00Z\n,1709510400,1709512200\n",
    )
    ws = read_windows(w, TZ)
    assert [(x.series, x.start, x.end, x.crossing) for x in ws] == [
        ("a", 1709510400.0, 1709512200.0, None),
        (None, 1709510400.0, 1709512200.0, None),
    ]


def test_sim_truth_windows_are_read_as_labels(tmp_path: Path) -> None:
    w = write(
        tmp_path,
        "truth_windows.csv",
        "zone,start,crossing,end,peak,peak_ts,closed\n"
        "plaza,2024-03-04T10:00:00+08:00,2024-03-04T10:30:00+08:00,2024-03-04T11:00:00+08:00,1600,"
        "2024-03-04T10:45:00+08:00,true\n",
    )
    (win,) = read_windows(w, TZ)
    assert (win.series, win.start, win.crossing, win.end) == ("plaza", 1709517600.0, 1709519400.0, 1709521200.0)
