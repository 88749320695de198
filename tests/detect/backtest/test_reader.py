"""Reading recorded CSVs: formats, timestamps, intervals, and every row it could not use accounted for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detect.backtest.reader import InputError, Recording, SeriesInfo, read_input
from domain.site import Site
from tests.detect.backtest.helpers import write

T0 = 1709510400.0  # 2024-03-04T08:00:00+08:00


def series(rec: Recording, name: str) -> tuple[list[float], list[float], SeriesInfo]:
    i = rec.names.index(name)
    a, b = rec.bounds[i], rec.bounds[i + 1]
    return rec.ts[a:b].tolist(), rec.value[a:b].tolist(), rec.info[i]


def test_value_format_is_one_series_named_after_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "plaza_counts.csv", "timestamp,value\n2024-03-04T08:00:00,5\n2024-03-04T08:01:00,7\n")
    rec = read_input(p)
    assert rec.format == "timestamp,value"
    assert rec.names == ["plaza_counts"]
    ts, vals, info = series(rec, "plaza_counts")
    assert ts == [T0, T0 + 60] and vals == [5.0, 7.0]
    assert info.interval_s == 60.0 and info.interval_known


def test_header_is_case_insensitive_in_any_order(tmp_path: Path) -> None:
    p = write(tmp_path, "x.csv", "Count, Sensor_ID ,TIMESTAMP\n3,a,2024-03-04T08:00:00\n")
    rec = read_input(p)
    assert rec.format == "timestamp,sensor_id,count" and rec.names == ["a"]


def test_count_format_without_site_is_one_series_per_sensor(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "c.csv",
        "timestamp,sensor_id,count\n"
        "2024-03-04T08:01:00,b,2\n2024-03-04T08:00:00,a,1\n2024-03-04T08:00:00,b,4\n2024-03-04T08:01:00,a,3\n",
    )
    rec = read_input(p)
    assert rec.names == ["a", "b"]
    assert series(rec, "a")[:2] == ([T0, T0 + 60], [1.0, 3.0])
    assert series(rec, "b")[:2] == ([T0, T0 + 60], [4.0, 2.0])  # sorted by time within the series


def test_in_out_with_site_sums_sensors_of_a_zone_and_reads_reversed_counters(tmp_path: Path, mini_site: Site) -> None:
    # seg1-west (interval counts) and seg1-east (running totals, mounted reversed: its `out` is the zone's
    # arrivals) are both in seg-1.
    p = write(
        tmp_path,
        "io.csv",
        "timestamp,sensor_id,in,out\n"
        "2024-03-04T07:59:00,seg1-east,500,100\n"  # first total: nothing to difference against
        "2024-03-04T08:00:00,seg1-west,10,1\n"
        "2024-03-04T08:00:00,seg1-east,599,104\n"
        "2024-03-04T08:01:00,seg1-west,12,1\n"
        "2024-03-04T08:01:00,seg1-east,0,3\n"  # reset (reboot): 3 since
        "2024-03-04T08:01:00,plaza-gate,7,2\n"
        "2024-03-04T08:01:00,gate-x,5,0\n",
    )
    rec = read_input(p, site=mini_site)
    assert rec.names == ["gate-x", "plaza", "seg-1"]
    assert series(rec, "seg-1")[:2] == ([T0, T0 + 60], [14.0, 15.0])
    assert (rec.total_first_rows, rec.total_resets) == (1, 1)
    info = series(rec, "seg-1")[2]
    assert info.zone == "seg-1" and info.sensors == ("seg1-east", "seg1-west")
    assert series(rec, "plaza")[2].zone == "plaza"
    assert rec.unknown_sensors == ["gate-x"] and series(rec, "gate-x")[2].zone is None


def test_in_out_without_site_takes_in_per_sensor(tmp_path: Path) -> None:
    p = write(tmp_path, "io.csv", "timestamp,sensor_id,in,out\n2024-03-04T08:00:00,seg1-east,99,4\n")
    rec = read_input(p)
    assert rec.names == ["seg1-east"] and rec.value.tolist() == [99.0]


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-03-04T08:00:00",  # naive, local Shanghai
        "2024-03-04 08:00",
        "2024-03-04T00:00:00Z",
        "2024-03-04T00:00:00+00:00",
        "2024-03-04T09:00:00+09:00",
        "2024-03-04T08:00:00+0800",
        "1709510400",  # epoch seconds
        "1709510400.0",
        "1709510400000",  # epoch milliseconds
        "03/04/2024 08:00",  # another format, guessed
    ],
)
def test_timestamp_forms_mean_the_same_instant(tmp_path: Path, stamp: str) -> None:
    rec = read_input(write(tmp_path, "t.csv", f"timestamp,value\n{stamp},1\n"))
    assert rec.ts.tolist() == [T0]


def test_naive_times_are_read_in_the_given_timezone(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "timestamp,value\n2024-03-04T08:00:00,1\n")
    assert read_input(p, tz="UTC").ts.tolist() == [T0 + 8 * 3600]
    assert read_input(p, tz="Asia/Shanghai").ts.tolist() == [T0]


def test_mixed_timestamp_forms_in_one_file(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "timestamp,value\n2024-03-04T08:00:00,1\n1709510460,2\n2024-03-04T00:02:00Z,3\n")
    assert read_input(p).ts.tolist() == [T0, T0 + 60, T0 + 120]


@pytest.mark.parametrize("step", [1, 3600])
def test_interval_is_inferred_from_one_second_to_one_hour(tmp_path: Path, step: int) -> None:
    body = "".join(f"{int(T0) + i * step},{i}\n" for i in range(50))
    rec = read_input(write(tmp_path, "s.csv", "timestamp,value\n" + body))
    assert rec.info[0].interval_s == step and rec.info[0].interval_in_range
    assert rec.info[0].gaps == 0 and rec.rows == 50


def test_gaps_empty_values_and_duplicates_are_reported_not_filled(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "g.csv",
        "timestamp,sensor_id,count\n"
        "2024-03-04T08:00:00,a,1\n"
        "2024-03-04T08:01:00,a,2\n"
        "2024-03-04T08:01:00,a,9\n"  # duplicate: first kept
        "2024-03-04T08:02:00,a,\n"  # empty value: skipped, not zero
        "2024-03-04T08:03:00,a,NaN\n"  # an empty token too
        "2024-03-04T08:04:00,a,5\n"
        "2024-03-04T08:05:00,a,6\n"
        "2024-03-04T08:06:00,a,6\n"
        "2024-03-04T08:20:00,a,7\n"  # a 14-minute gap: 13 missing steps
        "2024-03-04T08:21:00,a,7\n",
    )
    rec = read_input(p)
    _, vals, info = series(rec, "a")
    assert vals == [1.0, 2.0, 5.0, 6.0, 6.0, 7.0, 7.0]
    assert info.empty == 2 and info.duplicates == 1
    assert info.interval_s == 60.0
    # 08:01 -> 08:04 misses 2 steps (the empty ones), 08:06 -> 08:20 misses 13.
    assert info.gaps == 2 and info.missing_steps == 15 and info.largest_gap_s == 14 * 60
    assert rec.empty_values == 2 and rec.duplicates == 1 and rec.bad_rows == 0


def test_duplicates_are_judged_per_sensor_before_summing_a_zone(tmp_path: Path, mini_site: Site) -> None:
    p = write(
        tmp_path,
        "d.csv",
        "timestamp,sensor_id,count\n"
        "2024-03-04T08:00:00,plaza-gate,3\n"
        "2024-03-04T08:00:00,plaza-gate,30\n"
        "2024-03-04T08:00:00,plaza-cam,4\n",
    )
    rec = read_input(p, site=mini_site)
    assert rec.value.tolist() == [7.0] and rec.duplicates == 1


def test_bad_rows_are_counted_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "b.csv",
        "timestamp,sensor_id,count\n"  # line 1
        "2024-03-04T08:00:00,a,1\n"  # 2
        "\n"  # 3: blank, counted apart
        "yesterday,a,2\n"  # 4
        "2024-03-04T08:02:00,a,lots\n"  # 5
        "2024-03-04T08:03:00,a,4,extra\n"  # 6
        "2024-03-04T08:04:00,,4\n"  # 7
        "2024-03-04T08:05:00,a,inf\n"  # 8
        "2024-03-04T08:06:00,a,6\n",  # 9
    )
    rec = read_input(p, list_bad=10)
    assert [(b.line, b.reason) for b in rec.bad_examples] == [
        (4, "cannot read timestamp 'yesterday'"),
        (5, "count is not a number: 'lots'"),
        (6, "expected 3 fields, saw 4"),
        (7, "empty sensor_id"),
        (8, "count is not a number: 'inf'"),
    ]
    assert rec.bad_rows == 5 and rec.blank_lines == 1 and rec.data_lines == 8
    assert rec.value.tolist() == [1.0, 6.0]


def test_only_the_first_few_bad_rows_are_listed_but_all_are_counted(tmp_path: Path) -> None:
    body = "".join(f"bad{i},{i}\n" for i in range(20)) + "2024-03-04T08:00:00,1\n"
    rec = read_input(write(tmp_path, "b.csv", "timestamp,value\n" + body), list_bad=3)
    assert rec.bad_rows == 20 and [b.line for b in rec.bad_examples] == [2, 3, 4]


def test_bad_in_or_out_is_a_bad_row(tmp_path: Path) -> None:
    p = write(tmp_path, "io.csv", "timestamp,sensor_id,in,out\n2024-03-04T08:00:00,a,1,x\n2024-03-04T08:01:00,a,2,\n")
    rec = read_input(p)
    assert [(b.line, b.reason) for b in rec.bad_examples] == [(2, "out is not a number: 'x'")]
    assert rec.value.tolist() == [2.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("time,value\n1,2\n", "line 1: header 'time,value' is not a known format"),
        ("timestamp,sensor,count\n1,a,2\n", "missing sensor_id; unknown sensor"),
        ("timestamp,value,value\n1,2,3\n", "a column is named twice"),
        ("", "line 1: no header"),
        ("\n\n", "line 1: no header"),
    ],
)
def test_an_unusable_header_is_an_error_naming_line_1(tmp_path: Path, text: str, expected: str) -> None:
    p = write(tmp_path, "h.csv", text)
    with pytest.raises(InputError) as e:
        read_input(p)
    assert expected in str(e.value) and str(p) in str(e.value)


def test_a_file_without_usable_rows_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no usable rows .* first at line 2: cannot read timestamp 'x'"):
        read_input(write(tmp_path, "n.csv", "timestamp,value\nx,1\n2024-03-04T08:00:00,\n"))


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "enc.csv"
    p.write_bytes(b"timestamp,sensor_id,count\n2024-03-04T08:00:00,a,1\n2024-03-04T08:01:00,\xb9\xe3,1\n")
    with pytest.raises(InputError, match="line 3: not UTF-8"):
        read_input(p)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the file"):
        read_input(tmp_path / "nope.csv")


def test_a_series_with_one_row_assumes_one_minute(tmp_path: Path) -> None:
    rec = read_input(write(tmp_path, "o.csv", "timestamp,value\n2024-03-04T08:00:00,1\n"))
    assert rec.info[0].interval_s == 60.0 and not rec.info[0].interval_known


def test_rows_are_float_epoch_seconds_sorted_per_series(tmp_path: Path) -> None:
    body = "".join(f"{int(T0) + (i * 7919) % 100 * 60},{i}\n" for i in range(100))
    rec = read_input(write(tmp_path, "r.csv", "timestamp,value\n" + body))
    assert np.all(np.diff(rec.ts) == 60.0) and rec.ts.dtype == np.float64


def test_local_times_in_a_clock_change_are_bad_rows_saying_why(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "dst.csv",
        "timestamp,value\n2024-03-10T01:59:00,1\n2024-03-10T02:30:00,2\n2024-03-10T03:00:00,3\n"
        "2024-11-03T01:30:00,4\n2024-11-03T01:30:00-05:00,5\n",
    )
    rec = read_input(p, tz="America/New_York")
    assert [(b.line, b.reason) for b in rec.bad_examples] == [
        (3, "local time '2024-03-10T02:30:00' does not exist or is ambiguous in America/New_York (clock "
            "change); add an offset"),
        (5, "local time '2024-11-03T01:30:00' does not exist or is ambiguous in America/New_York (clock "
            "change); add an offset"),
    ]  # fmt: skip
    assert rec.rows == 3
