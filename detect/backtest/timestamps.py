"""Vectorised timestamp parsing for recorded CSVs: epoch seconds, ISO 8601 with offsets, or naive local time.

The kind is decided per row, so one file may mix them:
* a plain number is epoch seconds (above 1e11 it is taken as epoch milliseconds, as some loggers write);
* a string ending in `Z` or `±hh:mm` / `±hhmm` carries its own offset and is read as such;
* anything else is local time in `tz` (the `--tz` option, else the site's timezone, else Asia/Shanghai).
Local times that do not exist or are ambiguous in `tz` (daylight-saving changes) are rejected, not guessed.

>>> import pandas as pd
>>> ns, why = parse_timestamps(pd.Series(["2024-01-01 08:00", "2024-01-01T00:00:00Z", "1704067200", "x"]),
...                            "Asia/Shanghai")
>>> [int(v // 10**9) for v in ns[:3]], why[3]
([1704067200, 1704067200, 1704067200], "cannot read timestamp 'x'")
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.tseries.api import guess_datetime_format

NAT = np.iinfo(np.int64).min  # pandas' NaT as int64 nanoseconds
_OFFSET_RE = r"(?:[zZ]|[+-]\d\d:?\d\d)$"
_NUMBER_RE = r"^[+-]?\d+(?:\.\d*)?$"
EPOCH_MS_ABOVE = 1e11  # epoch seconds reach 1e11 in the year 5138; bigger numbers are milliseconds
# Times are held as int64 nanoseconds: pandas' range, 1677-09-21 to 2262-04-11. Outside it a cast would wrap.
_MIN_NS_TS, _MAX_NS_TS = pd.Timestamp.min, pd.Timestamp.max
_MAX_EPOCH_S = 9.2e9


def parse_timestamps(text: pd.Series, tz: str) -> tuple[npt.NDArray[np.int64], dict[int, str]]:
    """Parse strings to UTC epoch nanoseconds. Returns (ns, problems): ns is NAT where a row failed and
    problems maps those row positions to a reason."""
    # Sensors of one file share their timestamps: parse each distinct string once.
    codes, uniques = pd.factorize(text.astype(str), use_na_sentinel=False)
    ns, why = _parse_unique(pd.Series(uniques, dtype=object), tz)
    problems: dict[int, str] = {}
    if why:
        bad = np.flatnonzero(np.isin(codes, np.fromiter(why, dtype=np.int64)))
        problems = {int(i): why[int(codes[i])] for i in bad}
    return ns[codes], problems


def _parse_unique(text: pd.Series, tz: str) -> tuple[npt.NDArray[np.int64], dict[int, str]]:
    s = text.str.strip()
    n = len(s)
    out = np.full(n, NAT, dtype=np.int64)
    problems: dict[int, str] = {}
    empty = (s == "").to_numpy()
    is_num = s.str.match(_NUMBER_RE).to_numpy(dtype=bool)
    has_off = s.str.contains(_OFFSET_RE, regex=True).to_numpy(dtype=bool) & ~is_num
    naive = ~(empty | is_num | has_off)

    outside = np.zeros(n, dtype=bool)  # read, but not within the years 1677-2262
    if is_num.any():
        secs = pd.to_numeric(s[is_num], errors="coerce").to_numpy(dtype=np.float64)
        secs = np.where(np.abs(secs) > EPOCH_MS_ABOVE, secs / 1000.0, secs)
        fits = np.abs(secs) <= _MAX_EPOCH_S  # also False for NaN: the int64 cast below is defined
        out[np.flatnonzero(is_num)[fits]] = np.round(secs[fits] * 1e6).astype(np.int64) * 1000  # µs: exact
        outside[np.flatnonzero(is_num)[~fits]] = True
    if has_off.any():
        out[has_off], _, outside[has_off] = _to_ns(s[has_off], utc=True, tz=None)
    clock_change = np.zeros(n, dtype=bool)
    if naive.any():
        out[naive], clock_change[naive], outside[naive] = _to_ns(s[naive], utc=False, tz=tz)

    for i in np.flatnonzero(empty).tolist():
        problems[i] = "empty timestamp"
    for i in np.flatnonzero((out == NAT) & ~empty).tolist():
        if clock_change[i]:
            problems[i] = (
                f"local time {s.iat[i]!r} does not exist or is ambiguous in {tz} (clock change); add an offset"
            )
        elif outside[i]:
            problems[i] = f"timestamp {s.iat[i]!r} is outside the years 1677 to 2262"
        else:
            problems[i] = f"cannot read timestamp {s.iat[i]!r}"
    return out, problems


def _to_ns(
    s: pd.Series, *, utc: bool, tz: str | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """ISO 8601 first (fast path); rows it cannot read are retried with the format guessed from the first
    of them (e.g. 01/02/2024 08:00), so a whole file in another format stays vectorised. Returns the
    nanoseconds, which rows were read but fall in a clock change of `tz`, and which were read but lie outside
    the nanosecond range (years 1677 to 2262)."""
    parsed = pd.to_datetime(s, format="ISO8601", utc=utc, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        fmt = guess_datetime_format(str(s[bad].iat[0]))
        if fmt is not None:
            retry = pd.to_datetime(s[bad], format=fmt, utc=utc, errors="coerce")
            parsed = parsed.where(~bad, retry) if not retry.isna().all() else parsed
    read = parsed.notna().to_numpy()
    if not utc:
        assert tz is not None
        parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    # Resolution may be s/ms/us/ns depending on the strings: normalise to ns; NaT views as NAT.
    naive_utc = parsed.dt.tz_convert(None)
    fits = ((naive_utc >= _MIN_NS_TS) & (naive_utc <= _MAX_NS_TS)).to_numpy(dtype=bool)
    outside = naive_utc.notna().to_numpy(dtype=bool) & ~fits
    naive_utc = naive_utc.where(fits).dt.as_unit("ns")
    ns = np.asarray(naive_utc.to_numpy(), dtype="datetime64[ns]").view(np.int64)
    return ns, read & (ns == NAT) & ~outside, outside
