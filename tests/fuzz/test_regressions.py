"""Failures scripts/fuzz.py found in the file readers, each with the exact input that failed.

Decoder regressions are in tests/ingest/test_decoder.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alerts.roster import RosterError, parse_roster
from crowdflow.config import ConfigError, load_config
from detect.backtest.labels import read_windows
from detect.backtest.reader import InputError, read_input
from detect.backtest.timestamps import NAT, parse_timestamps
from domain.loader import SiteError, parse_site
from domain.site import Site
from tests.fuzz.inputs import ROSTER_TEXT, SITE_TEXT
from tests.fuzz.targets import SITE

DEEP_TABLES = "deep = " + "{a = " * 1362 + "1" + "}" * 1362 + "\n"
DEEP_ARRAYS = "deep = " + "[" * 2251 + "]" * 2251 + "\n"


def site_problems(text: str) -> str:
    with pytest.raises(SiteError) as e:
        parse_site(text, "fuzz.toml")
    return str(e.value)


@pytest.mark.parametrize("deep", [DEEP_TABLES, DEEP_ARRAYS])
def test_deeply_nested_toml_is_a_site_error_not_a_recursion_error(deep: str) -> None:
    assert "nested too deep" in site_problems(deep + SITE_TEXT)


@pytest.mark.parametrize("deep", [DEEP_TABLES, DEEP_ARRAYS])
def test_deeply_nested_toml_is_a_roster_error_not_a_recursion_error(deep: str) -> None:
    with pytest.raises(RosterError, match="nested too deep"):
        parse_roster(deep + ROSTER_TEXT, SITE)


@pytest.mark.parametrize("tz", [" Asia/Shanghai", "Mars/Olympus", "America", "../etc/passwd", ""])
def test_unknown_timezone_is_reported_not_accepted(tz: str) -> None:
    # Accepted before: the service then died building its decoder, ZoneInfo(" Asia/Shanghai").
    msg = site_problems(SITE_TEXT.replace('timezone = "Asia/Shanghai"', f'timezone = "{tz}"'))
    assert "site, field timezone" in msg and "IANA" in msg


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ("dwell_min = 20", "dwell_min = nan", "zones 'plaza', field dwell_min"),
        ('kind = "density"', 'kind = "density"\ninterval_s = nan', "sensors 'plaza-cam', field interval_s"),
        ("min_duration_s = 30", "min_duration_s = -5", "thresholds, field min_duration_s"),
        (
            "share = [0.6, 0.7, 0.8, 0.95]",
            "share = [0.6, 0.7, 0.8, inf]",
            "thresholds: every threshold must be a finite number",
        ),
        ("peak_day_visits = 100000", "peak_day_visits = 0", "site, field peak_day_visits"),
        ("peak_day_visits = 100000", "peak_day_visits = 1\norigin = [91.0, 0.0]", "site, field origin"),
        ("nye = 1.3", "nye = nan", "profile, field day_factor.nye"),
        (
            "[24, 0.2]]",
            "[24, nan]]",
            "profile.shapes 'leisure', field weekday: hours and weights must be finite numbers",
        ),
        (
            "[100, 20], [0, 20]]",
            "[100, 20], [0, inf]]",
            "zones 'seg-1', field polygon: coordinates must be finite metres",
        ),
    ],
)
def test_non_finite_and_out_of_range_numbers_are_reported(old: str, new: str, what: str) -> None:
    assert old in SITE_TEXT
    assert what in site_problems(SITE_TEXT.replace(old, new, 1))
    assert isinstance(parse_site(SITE_TEXT), Site)


def test_a_bad_value_in_a_table_of_free_keys_is_named_by_its_key() -> None:
    # msgspec says `$.escalation.delay_s[...]`: the roster's error named no key for "capacty" = "".
    text = ROSTER_TEXT.replace("IV = 1200", 'IV = 1200\ncapacty = ""', 1)
    with pytest.raises(RosterError, match=r"field delay_s\.capacty: Expected `float`, got `str`"):
        parse_roster(text, SITE)
    assert "$.profile.day_factor.nye" in site_problems(SITE_TEXT.replace("nye = 1.3", 'nye = "x"'))


def test_a_wait_that_rounds_to_zero_in_emergency_mode_is_refused() -> None:
    # Accepted before: I = 5e-324 s is "positive", and halved in emergency mode it is 0.0.
    with pytest.raises(RosterError, match=r"field delay_s\.I: must be positive seconds \(at least 1 s\)"):
        parse_roster(ROSTER_TEXT.replace("I = 120", "I = 5e-324", 1), SITE)
    with pytest.raises(RosterError, match=r"field emergency_factor: 0\.001 turns delay_s\.I \(120 s\) into 0\.12 s"):
        parse_roster(ROSTER_TEXT.replace("emergency_factor = 0.5", "emergency_factor = 0.001"), SITE)
    # Found by scripts/fuzz.py: the error named emergency_factor but not the wait it shortened.
    with pytest.raises(RosterError, match=r"0\.5 turns ack_ttl_s\.I \(1 s\) into 0\.5 s .* or ack_ttl_s\.I"):
        parse_roster(ROSTER_TEXT.replace("\nI = 600", "\nI = 1", 1), SITE)


# --- recorded CSVs --------------------------------------------------------------------------------------------

CRASHING_CSV = (
    b"TIMESTAMP, Sensor_ID ,In,OUT\n\n-823072707, ,nan,123,2.249784348886844e+16\n"
    b"-6.960158390243071e+16,,-15497,9999\n"
    b"4096,plaza-cam,7.086592449496749e+33,1500,315,-2.2250738585e-313\n"
    b"9999-12-31T23:59,seg1-west,1,2\n"
    b"2024-03-04T08:00:00,seg1-west,3,4\n"
)


def test_timestamps_beyond_nanosecond_range_are_bad_rows_not_a_crash(tmp_path: Path) -> None:
    # OutOfBoundsDatetime from pandas' as_unit("ns") on 9999-12-31; numbers beyond it wrapped silently.
    p = tmp_path / "rec.csv"
    p.write_bytes(CRASHING_CSV)
    rec = read_input(p, site=SITE)
    assert rec.rows == 1 and rec.ts.tolist() == [1709510400.0]
    reasons = {b.line: b.reason for b in rec.bad_examples}
    assert reasons[6] == "timestamp '9999-12-31T23:59' is outside the years 1677 to 2262"


@pytest.mark.parametrize(
    "text",
    ["9999-12-31T23:59", "0001-01-01", "1500-01-01T00:00:00+08:00", "99999999999999999999999", "-9300000000"],
)
def test_out_of_range_timestamp_is_a_reason_never_a_wrapped_number(text: str) -> None:
    with np.errstate(all="raise"):  # the old cast of 1e26 µs to int64 wrapped around with only a warning
        ns, why = parse_timestamps(pd.Series([text, "2024-03-04T08:00:00+08:00"]), "Asia/Shanghai")
    assert ns[0] == NAT and why == {0: f"timestamp {text!r} is outside the years 1677 to 2262"}
    assert ns[1] == 1709510400 * 10**9


def test_label_with_out_of_range_time_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    p.write_bytes(b"series,start,end,crossing\n\n1.9394155467014016e+16,30.0,0001-01-01,2024-03-04T00:02:00Z\n")
    with pytest.raises(InputError, match="end: timestamp '0001-01-01' is outside the years 1677 to 2262"):
        read_windows(p, "Asia/Shanghai")


# --- configuration (crowdflow/config.py) ----------------------------------------------------------------------


def test_config_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text(DEEP_ARRAYS + '[mqtt]\nhost = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(p, env={})


def test_config_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_bytes(b'[mqtt]\nclient_id = "crowdflow-\xeb\x957^\xff\xc6ice"\n')
    with pytest.raises(ConfigError):
        load_config(p, env={})


def test_config_out_of_range_values_are_config_errors(tmp_path: Path) -> None:
    for text, named in (
        ("[mqtt]\nport = -1\n", "port"),
        ("[mqtt]\nqos = 7\n", "qos"),
        ("[service]\ntick_s = nan\n", "tick_s"),
        ("[service]\ntick_s = 0\n", "tick_s"),
        ("[service]\nlateness_s = -5\n", "lateness_s"),
        ("[service]\nsnapshot_s = inf\n", "snapshot_s"),
        ("[dashboard]\nport = 70000\n", "port"),
        ("[alerts]\nmax_attempts = 0\n", "max_attempts"),
    ):
        p = tmp_path / "c.toml"
        p.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=named):
            load_config(p, env={})
    with pytest.raises(ConfigError, match="qos"):
        load_config(None, env={"CROWDFLOW_MQTT_QOS": "3"})
