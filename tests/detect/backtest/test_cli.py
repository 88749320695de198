"""`crowdflow backtest` end to end: result file, summary, exit codes, labels, progress."""

from __future__ import annotations

import csv
import doctest
import io
import itertools
import re
from pathlib import Path
from types import ModuleType

import pytest

import detect.backtest.progress
import detect.backtest.timestamps
from detect.backtest.cli import PROGRESS_MIN_ROWS, main, run
from detect.registry import DETECTORS, default_surge_detector
from tests.detect.backtest.helpers import EWZ, Threshold, minutes_csv, write

MINI = str(Path(__file__).resolve().parents[2] / "fixtures" / "mini_site.toml")


@pytest.fixture(autouse=True)
def test_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DETECTORS, "threshold", Threshold)
    monkeypatch.setitem(DETECTORS, "ewz", EWZ)


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    ticks = itertools.count(0.0, 0.5)  # a clock that moves half a second per reading
    rc = run(argv, stdout=out, stderr=err, clock=lambda: next(ticks))
    return rc, out.getvalue(), err.getvalue()


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_result_has_the_columns_and_one_row_per_timestamp_and_series(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        "io.csv",
        "timestamp,sensor_id,in,out\n"
        "2024-03-04T08:00:00,seg1-west,10,1\n2024-03-04T08:00:00,seg1-east,0,5\n"  # a running total
        "2024-03-04T08:00:00,plaza-gate,3,0\n"
        "2024-03-04T08:01:00,seg1-west,70,1\n2024-03-04T08:01:00,seg1-east,0,9\n"
        "2024-03-04T08:01:00,plaza-gate,3,0\n"
        "2024-03-04T08:02:00,seg1-west,10,1\n",
    )
    out = tmp_path / "r.csv"
    rc, text, err = call([str(src), "--out", str(out), "--site", MINI, "--detector", "threshold"])
    assert rc == 0, err
    with out.open() as f:
        assert f.readline().strip() == "timestamp,series,value,score,level,alert"
    got = [(r["timestamp"], r["series"], r["value"], r["score"], r["level"], r["alert"]) for r in rows(out)]
    assert got == [
        ("2024-03-04T08:00:00+08:00", "plaza", "3", "0", "normal", ""),
        ("2024-03-04T08:00:00+08:00", "seg-1", "10", "0", "normal", ""),
        ("2024-03-04T08:01:00+08:00", "plaza", "3", "0", "normal", ""),
        ("2024-03-04T08:01:00+08:00", "seg-1", "74", "1", "III yellow", "seg-1#1"),
        ("2024-03-04T08:02:00+08:00", "seg-1", "10", "0", "normal", "seg-1#1"),
    ]
    assert "7 data lines -> 5 rows in 2 series -> 5 output rows" in text
    assert "1 first rows dropped, 0 resets" in text
    assert "seg-1#1: 2024-03-04T08:01:00+08:00 .. 2024-03-04T08:02:00+08:00" in text


def test_summary_reports_intervals_gaps_empties_duplicates_bad_rows_and_alerts(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        "c.csv",
        "timestamp,sensor_id,count\n"
        + "".join(f"2024-03-04T08:{m:02d}:00,a,{60 if m == 7 else 5}\n" for m in range(10))
        + "2024-03-04T08:03:00,a,99\n"  # line 12: duplicate
        + "".join(f"2024-03-04T{h:02d}:00:00,b,5\n" for h in (8, 9, 10, 13))  # hourly with a 2-hour hole
        + "2024-03-04T14:00:00,b,\n"  # line 17: empty
        + "2024-03-04T15:00:00,b,five\n",  # line 18: bad
    )
    rc, text, _ = call([str(src), "--out", str(tmp_path / "r.csv"), "--detector", "threshold"])
    assert rc == 0
    assert "1 empty values, 1 duplicate timestamps (first kept), 1 bad rows" in text
    assert "bad row at line 18: count is not a number: 'five'" in text
    table = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  a ")}
    table |= {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("  b ")}
    # rows, interval, gaps, missing, empty, dups, alerts
    assert table["a"] == ["10", "1", "min", "0", "0", "0", "1", "1"]
    assert table["b"] == ["4", "60", "min", "1", "2", "1", "0", "0"]


def test_malformed_header_exits_2_naming_line_1(tmp_path: Path) -> None:
    src = write(tmp_path, "h.csv", "when,how_many\n2024-03-04T08:00:00,1\n")
    rc, text, err = call([str(src), "--out", str(tmp_path / "r.csv")])
    assert rc == 2 and text == ""
    assert f"{src}: line 1: header 'when,how_many' is not a known format" in err
    assert not (tmp_path / "r.csv").exists()


def test_strict_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    src = write(tmp_path, "s.csv", "timestamp,value\n2024-03-04T08:00:00,1\n2024-03-04T08:01:00,x\n")
    rc, _, err = call([str(src), "--out", str(tmp_path / "r.csv"), "--strict"])
    assert rc == 2 and "line 3: value is not a number: 'x' (--strict stops at bad rows)" in err
    rc, text, _ = call([str(src), "--out", str(tmp_path / "r.csv")])
    assert rc == 0 and "bad row at line 3" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tz", "Mars/Olympus"], "unknown timezone 'Mars/Olympus'"),
        (["--site", "nope.toml"], "nope.toml"),
        (["--detector", "nope"], "invalid choice: 'nope'"),
        (["--threshold", "0"], "--threshold must be in (0, 1]"),
        (["--labels", "missing.csv"], "cannot read the labels file"),
    ],
)
def test_bad_options_exit_2_with_a_message(tmp_path: Path, extra: list[str], message: str) -> None:
    src = minutes_csv(tmp_path, "s.csv", [1, 2, 3])
    rc, _, err = call([str(src), "--out", str(tmp_path / "r.csv"), *extra])
    assert rc == 2 and message in err


def test_labels_print_metrics_and_a_machine_readable_line(tmp_path: Path) -> None:
    v = [10.0] * 240
    v[30] = 60.0
    v[120:150] = [60.0] * 30
    src = minutes_csv(tmp_path, "lab.csv", v)
    labels = write(
        tmp_path, "w.csv", "series,start,end,crossing\nlab,2024-03-04 10:20,2024-03-04 11:00,2024-03-04 10:40\n"
    )
    rc, text, err = call(
        [str(src), "--out", str(tmp_path / "r.csv"), "--labels", str(labels), "--detector", "threshold"]
    )
    assert rc == 0, err
    assert text.splitlines()[-2] == (
        "windows=1 detected=1 recall=1.000 alerts=2 precision=0.500 median_lead_min=20.0 "
        "median_crossing_lead_min=40.0 false_alarms=1 fa_per_series_day=6.000"
    )
    assert "capacity crossings warned before they happened: 1/1" in text


def test_progress_bar_on_a_long_input(tmp_path: Path) -> None:
    n = PROGRESS_MIN_ROWS + 20_000
    body = "".join(f"{1709510400 + i},{i % 7}\n" for i in range(n))  # one-second steps
    src = write(tmp_path, "long.csv", "timestamp,value\n" + body)
    rc, text, err = call([str(src), "--out", str(tmp_path / "r.csv"), "--detector", "ewz"])
    assert rc == 0
    lines = err.splitlines()
    assert len(lines) >= 3 and all("rows/s" in line for line in lines)
    assert "ETA" in lines[0] and lines[-1].split()[:3] == ["backtest", "100%", f"{n:,}/{n:,}"]
    assert f"{n:,} rows in 1 series" in text and "1 s" in text
    # Short inputs stay quiet unless asked.
    short = minutes_csv(tmp_path, "short.csv", [1, 2, 3])
    assert call([str(short), "--out", str(tmp_path / "r2.csv")])[2] == ""
    assert "rows/s" in call([str(short), "--out", str(tmp_path / "r2.csv"), "--progress", "always"])[2]


def test_default_detector_from_the_registry_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(
        tmp_path,
        "z.csv",
        "timestamp,sensor_id,count\n"
        + "".join(f"2024-03-04T{8 + m // 60:02d}:{m % 60:02d}:00,plaza-gate,{5 + m % 3}\n" for m in range(180)),
    )
    out = tmp_path / "r.csv"
    assert main([str(src), "--out", str(out), "--site", MINI]) == 0
    text = capsys.readouterr().out
    assert f"detector {default_surge_detector().name}:" in text
    got = rows(out)
    assert len(got) == 180 and {r["series"] for r in got} == {"plaza"}
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in got)


def test_a_failing_detector_exits_1_naming_it(tmp_path: Path) -> None:
    class Broken(Threshold):
        def score_one(self, x):  # type: ignore[no-untyped-def]
            raise ValueError("boom")

    DETECTORS["broken"] = Broken
    try:
        rc, _, err = call(
            [str(minutes_csv(tmp_path, "s.csv", [1])), "--out", str(tmp_path / "r.csv"), "--detector", "broken"]
        )
    finally:
        del DETECTORS["broken"]
    assert rc == 1 and "detector broken failed: ValueError: boom" in err


@pytest.mark.parametrize("module", [detect.backtest.timestamps, detect.backtest.progress])
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_output_times_carry_the_offset_of_their_own_date(tmp_path: Path) -> None:
    src = write(tmp_path, "ny.csv", "timestamp,value\n2024-03-09T12:00:00Z,1\n2024-03-11T12:00:00Z,2\n")
    out = tmp_path / "r.csv"
    assert call([str(src), "--out", str(out), "--tz", "America/New_York", "--detector", "threshold"])[0] == 0
    assert [r["timestamp"] for r in rows(out)] == ["2024-03-09T07:00:00-05:00", "2024-03-11T08:00:00-04:00"]


def test_many_series_are_summed_up_in_the_summary(tmp_path: Path) -> None:
    body = "".join(
        f"2024-03-04T08:0{m}:00,s{i:02d},{60 if (i == 44 and m == 2) else 5}\n" for m in range(5) for i in range(45)
    )
    src = write(tmp_path, "many.csv", "timestamp,sensor_id,count\n" + body)
    rc, text, _ = call([str(src), "--out", str(tmp_path / "r.csv"), "--detector", "threshold"])
    assert rc == 0
    table = [line for line in text.splitlines() if re.match(r"  s\d\d ", line)]
    assert len(table) == 40 and table[0].split()[0] == "s44"  # the series with alerts first
    assert "... 5 more series (fewest alerts), all in the result file" in text
    assert "intervals: 1 min x 45" in text
