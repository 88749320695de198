"""Read a recorded CSV into sorted series, vectorised, reporting every row it could not use.

Formats (the header decides; column names are case-insensitive, in any order):
* `timestamp,value`: one series, named after the file's stem;
* `timestamp,sensor_id,count`: one series per sensor, or per zone with a site (sensors of a zone summed per
  timestamp; a sensor the site does not know stays a series of its own and is listed);
* `timestamp,sensor_id,in,out`: as above with value = `in`, the arrivals (`out` for a sensor the site says
  is mounted reversed). Sensors the site sets to mode "total" report running totals: they are turned
  into counts per step (a fall is a reset, counted from zero; each such sensor's first row is dropped).

Rules, none of them fatal except an unusable header or file:
* a blank line is skipped and counted;
* an empty value (or NA/NaN/null/none) is skipped and counted per series: a gap, never a zero;
* a bad row (unreadable timestamp, not a number, empty sensor_id, wrong number of fields) is skipped,
  counted, and the first few are listed with their line numbers;
* of rows with the same series (or sensor) and timestamp the first in the file is kept, the others counted.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from detect.backtest.timestamps import NAT, parse_timestamps
from domain.site import Site

FORMATS: dict[frozenset[str], str] = {
    frozenset({"timestamp", "value"}): "timestamp,value",
    frozenset({"timestamp", "sensor_id", "count"}): "timestamp,sensor_id,count",
    frozenset({"timestamp", "sensor_id", "in", "out"}): "timestamp,sensor_id,in,out",
}
VALUE_FORMAT = "timestamp,value"
INOUT_FORMAT = "timestamp,sensor_id,in,out"
_EMPTY_TOKENS = {"", "na", "nan", "null", "none"}
_SKIP_RE = re.compile(r"Skipping line (\d+): (.*)")
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 3600.0


class InputError(ValueError):
    """A file that cannot be used at all. Names the file, the line and what is wrong."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}: line {line}" if line is not None else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass
class SeriesInfo:
    """What the reader found in one series."""

    name: str
    rows: int  # rows after dropping empties and duplicates (and summing sensors of a zone)
    start: float  # epoch seconds
    end: float
    interval_s: float  # median step; 60 s assumed when a series has a single row
    interval_known: bool
    gaps: int = 0  # steps longer than 1.5 intervals
    missing_steps: int = 0  # intervals missing inside those gaps
    largest_gap_s: float = 0.0
    empty: int = 0
    duplicates: int = 0
    zone: str | None = None  # the site zone this series is, if any
    sensors: tuple[str, ...] = ()

    @property
    def interval_in_range(self) -> bool:
        return MIN_INTERVAL_S <= self.interval_s <= MAX_INTERVAL_S


@dataclass
class Recording:
    """Rows sorted by (series, time): series `i` is rows bounds[i]:bounds[i+1]."""

    path: str
    format: str
    tz: str
    names: list[str]
    ts: npt.NDArray[np.float64]  # epoch seconds
    value: npt.NDArray[np.float64]
    bounds: npt.NDArray[np.int64]
    info: list[SeriesInfo]
    data_lines: int = 0  # lines after the header
    blank_lines: int = 0
    bad_rows: int = 0
    bad_examples: list[BadRow] = field(default_factory=list)
    unknown_sensors: list[str] = field(default_factory=list)
    total_first_rows: int = 0  # first rows of running-total sensors (nothing to difference against)
    total_resets: int = 0  # falls of a running total (midnight, reboot), counted from zero

    @property
    def rows(self) -> int:
        return len(self.ts)

    @property
    def empty_values(self) -> int:
        return sum(i.empty for i in self.info)

    @property
    def duplicates(self) -> int:
        return sum(i.duplicates for i in self.info)


def read_header(path: str) -> tuple[str, list[str]]:
    """The format named by the header line, and the column names as written (normalised)."""
    try:
        with open(path, "rb") as f:
            raw = f.readline()  # bytes: decoding a text buffer would read (and judge) lines beyond the header
    except OSError as e:
        raise InputError(path, None, f"cannot read the file ({e.strerror})") from e
    try:
        first = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(path, 1, f"not UTF-8 text ({e.reason})") from e
    if not first.strip():
        raise InputError(path, 1, f"no header; the first line must be one of: {_known()}")
    cols = [c.strip().lower() for c in next(csv.reader([first]))]
    fmt = FORMATS.get(frozenset(cols))
    if fmt is None or len(cols) != len(set(cols)):
        raise InputError(path, 1, _header_hint(first.strip(), cols))
    return fmt, cols


def _known() -> str:
    return " | ".join(FORMATS.values())


def _header_hint(raw: str, cols: list[str]) -> str:
    msg = f"header {raw!r} is not a known format; use one of: {_known()}"
    if len(cols) != len(set(cols)):
        return msg + " (a column is named twice)"
    best = min(FORMATS, key=lambda k: len(k ^ set(cols)))
    missing, extra = sorted(best - set(cols)), sorted(set(cols) - best)
    parts = [
        f"missing {', '.join(missing)}" if missing else "",
        f"unknown {', '.join(extra)}" if extra else "",
    ]
    return msg + f" (closest: {FORMATS[best]}: " + "; ".join(p for p in parts if p) + ")"


def read_input(path: str | Path, *, site: Site | None = None, tz: str | None = None, list_bad: int = 5) -> Recording:
    """Read and check a recorded CSV. Raises InputError for an unusable file; bad rows are counted."""
    p = str(path)
    fmt, cols = read_header(p)
    tzname = tz or (site.info.timezone if site is not None else "Asia/Shanghai")
    df, skipped = _read_frame(p, cols)
    n = len(df)
    # File line of every frame row: data starts at line 2; lines pandas skipped are not in the frame.
    line = np.setdiff1d(np.arange(2, n + len(skipped) + 2), np.array(sorted(skipped), dtype=np.int64))
    reasons: dict[int, str] = {}  # frame row -> why it is unusable

    blank = np.ones(n, dtype=bool)
    for c in cols:
        blank &= (df[c] == "").to_numpy(dtype=bool)
    ts_ns, ts_why = parse_timestamps(df["timestamp"], tzname)
    for i, why in ts_why.items():
        if not blank[i]:
            reasons[i] = why

    if fmt == VALUE_FORMAT:
        sensor = np.full(n, Path(p).stem, dtype=object)
        raw_value = df["value"].to_numpy(dtype=object)
        value_col = np.full(n, "value", dtype=object)
    else:
        sensor = df["sensor_id"].str.strip().to_numpy(dtype=object)
        for i in np.flatnonzero((sensor == "") & ~blank).tolist():
            reasons.setdefault(int(i), "empty sensor_id")
        if fmt == "timestamp,sensor_id,count":
            raw_value = df["count"].to_numpy(dtype=object)
            value_col = np.full(n, "count", dtype=object)
        else:
            rev = _reversed_mask(sensor, site)
            raw_value = np.where(rev, df["out"].to_numpy(dtype=object), df["in"].to_numpy(dtype=object))
            value_col = np.where(rev, "out", "in").astype(object)
            other = np.where(rev, df["in"].to_numpy(dtype=object), df["out"].to_numpy(dtype=object))
            o_val, o_empty = _numbers(other)
            for i in np.flatnonzero(~np.isfinite(o_val) & ~o_empty & ~blank).tolist():
                reasons.setdefault(
                    int(i),
                    f"{'in' if value_col[i] == 'out' else 'out'} is not a number: {str(other[i]).strip()!r}",
                )
    value, empty = _numbers(raw_value)
    for i in np.flatnonzero(~np.isfinite(value) & ~empty & ~blank).tolist():
        reasons.setdefault(int(i), f"{value_col[i]} is not a number: {str(raw_value[i]).strip()!r}")

    bad = np.zeros(n, dtype=bool)
    if reasons:
        bad[np.fromiter(reasons, dtype=np.int64)] = True
    bad_list = [BadRow(int(line[i]), reasons[i]) for i in sorted(reasons)]
    bad_list += [BadRow(ln, why) for ln, why in skipped.items()]
    bad_list.sort(key=lambda b: b.line)

    series, zone_of, unknown = _series_keys(sensor, fmt, site)
    rec = _assemble(
        p,
        fmt,
        tzname,
        sensor,
        series,
        zone_of,
        ts_ns,
        value,
        empty=empty & ~blank & ~bad,
        keep=~(blank | bad | empty),
        aggregate=site is not None and fmt != VALUE_FORMAT,
        totals=_total_mask(sensor, site) if fmt == INOUT_FORMAT else None,
    )
    rec.data_lines = n + len(skipped)
    rec.blank_lines = int(blank.sum())
    rec.bad_rows = len(bad_list)
    rec.bad_examples = bad_list[:list_bad]
    rec.unknown_sensors = unknown
    if rec.rows == 0:
        raise InputError(
            p,
            None,
            f"no usable rows ({rec.data_lines} data lines: {rec.blank_lines} blank, "
            f"{rec.empty_values} empty values, {rec.bad_rows} bad rows"
            + (f", first at line {bad_list[0].line}: {bad_list[0].reason}" if bad_list else "")
            + ")",
        )
    return rec


def _read_frame(path: str, cols: list[str]) -> tuple[pd.DataFrame, dict[int, str]]:
    """All columns as text (parsed vectorised later). Lines with the wrong number of fields are collected
    from pandas' warnings with their line numbers, as bad rows."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = pd.read_csv(
                path,
                dtype=str,
                na_filter=False,
                skip_blank_lines=False,
                on_bad_lines="warn",
                encoding="utf-8-sig",
                engine="c",
                header=0,
                names=cols,
            )
    except UnicodeDecodeError as e:
        raise InputError(path, _first_undecodable_line(path), f"not UTF-8 text ({e.reason})") from e
    except (pd.errors.ParserError, ValueError) as e:
        m = re.search(r"line (\d+)", str(e))
        raise InputError(path, int(m.group(1)) if m else None, f"cannot parse the CSV: {e}") from e
    skipped: dict[int, str] = {}
    for w in caught:
        for ln, why in _SKIP_RE.findall(str(w.message)):
            skipped[int(ln)] = why.strip()
    return df, skipped


def _first_undecodable_line(path: str) -> int | None:
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return i
    return None


def _numbers(raw: npt.NDArray[np.object_]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """(value, empty): NaN where a cell is empty or unreadable; parsed once per distinct string."""
    codes, uniques = pd.factorize(pd.Series(raw, dtype=object), use_na_sentinel=False)
    u = pd.Series(uniques, dtype=object).astype(str).str.strip()
    vals = pd.to_numeric(u, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    vals[~np.isfinite(vals)] = np.nan
    emp = u.str.lower().isin(_EMPTY_TOKENS).to_numpy(dtype=bool)
    return vals[codes], emp[codes]


def _reversed_mask(sensor: npt.NDArray[np.object_], site: Site | None) -> npt.NDArray[np.bool_]:
    if site is None:
        return np.zeros(len(sensor), dtype=bool)
    rev = {sid for sid, s in site.sensors.items() if s.direction == "reversed"}
    return np.asarray(pd.Series(sensor, dtype=object).isin(rev).to_numpy(), dtype=bool)


def _total_mask(sensor: npt.NDArray[np.object_], site: Site | None) -> npt.NDArray[np.bool_] | None:
    if site is None:
        return None
    totals = {sid for sid, s in site.sensors.items() if s.kind == "counter" and s.mode == "total"}
    return np.asarray(pd.Series(sensor, dtype=object).isin(totals).to_numpy(), dtype=bool)


def _series_keys(
    sensor: npt.NDArray[np.object_], fmt: str, site: Site | None
) -> tuple[npt.NDArray[np.object_], dict[str, str], list[str]]:
    """Series name per row, which series are site zones, and the sensors the site does not know."""
    if site is None or fmt == VALUE_FORMAT:
        return sensor, {}, []
    s = pd.Series(sensor, dtype=object)
    mapping = {sid: sen.zone for sid, sen in site.sensors.items()}
    zone = s.map(mapping)
    known = zone.notna().to_numpy()
    unknown = sorted({str(x) for x in s[~known].unique() if x != ""})
    series = np.where(known, zone.to_numpy(dtype=object), sensor).astype(object)
    return series, {z: z for z in site.zones}, unknown


def _assemble(
    path: str,
    fmt: str,
    tz: str,
    sensor: npt.NDArray[np.object_],
    series: npt.NDArray[np.object_],
    zones: dict[str, str],
    ts_ns: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    *,
    empty: npt.NDArray[np.bool_],
    keep: npt.NDArray[np.bool_],
    aggregate: bool,
    totals: npt.NDArray[np.bool_] | None = None,
) -> Recording:
    # Series are named by their usable rows only (a bad row's sensor_id may be garbage).
    valid = keep | empty
    names_all, code_valid = np.unique(series[valid].astype(str), return_inverse=True)
    code_all = np.full(len(series), -1, dtype=np.int64)
    code_all[valid] = code_valid
    names = [str(x) for x in names_all]
    k = len(names)
    empties = np.bincount(code_all[empty], minlength=k)
    # Duplicates are judged per sensor (the unit that reports), first in the file wins.
    kept = np.flatnonzero(keep)
    frame = pd.DataFrame({"sensor": sensor[kept], "ts": ts_ns[kept]})
    dup = frame.duplicated(["sensor", "ts"], keep="first").to_numpy()
    dups = np.bincount(code_all[kept[dup]], minlength=k)
    kept = kept[~dup]
    code, ts, val = code_all[kept], ts_ns[kept], value[kept]
    first_totals = resets = 0
    if totals is not None and totals[kept].any():
        val, usable, first_totals, resets = _difference_totals(sensor[kept], ts, val, totals[kept])
        kept, code, ts, val = kept[usable], code[usable], ts[usable], val[usable]
    sensors_of: dict[int, set[str]] = {}
    for c, sid in pd.DataFrame({"c": code, "s": sensor[kept]}).drop_duplicates().itertuples(index=False):
        sensors_of.setdefault(int(c), set()).add(str(sid))
    if aggregate:
        g = pd.DataFrame({"c": code, "t": ts, "v": val}).groupby(["c", "t"], sort=True)["v"].sum()
        code = g.index.get_level_values(0).to_numpy(dtype=np.int64)
        ts = g.index.get_level_values(1).to_numpy(dtype=np.int64)
        val = g.to_numpy(dtype=np.float64)
    else:
        order = np.lexsort((ts, code))
        code, ts, val = code[order], ts[order], val[order]
    assert not (ts == NAT).any()
    bounds = np.searchsorted(code, np.arange(k + 1)).astype(np.int64)
    secs = ts.astype(np.float64) / 1e9
    info = [
        _series_info(
            names[i],
            secs[bounds[i] : bounds[i + 1]],
            int(empties[i]),
            int(dups[i]),
            zones.get(names[i]),
            tuple(sorted(sensors_of.get(i, ()))),
        )
        for i in range(k)
    ]
    # Series whose every row was empty or bad still appear in the report with no rows.
    return Recording(
        path=path, format=fmt, tz=tz, names=names, ts=secs, value=val, bounds=bounds, info=info,
        total_first_rows=first_totals, total_resets=resets,
    )  # fmt: skip


def _difference_totals(
    sensor: npt.NDArray[np.object_],
    ts: npt.NDArray[np.int64],
    val: npt.NDArray[np.float64],
    is_total: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], int, int]:
    """Running totals (site sensors in mode "total") -> counts per step: the rise since the sensor's previous
    row; after a fall (a reset at midnight or a reboot) the value itself, counted from zero. A sensor's
    first row has nothing to rise from: it is dropped and counted. Returns (values, usable, firsts, resets)."""
    out = val.copy()
    usable = np.ones(len(val), dtype=bool)
    rows = np.flatnonzero(is_total)
    sid = pd.factorize(pd.Series(sensor[rows], dtype=object))[0]
    perm = np.lexsort((ts[rows], sid))
    order, sid_sorted = rows[perm], sid[perm]
    same = np.concatenate(([False], sid_sorted[1:] == sid_sorted[:-1]))
    v = val[order]
    rise = np.diff(v, prepend=np.nan)
    fell = same & (rise < 0)
    out[order] = np.where(fell, v, rise)
    usable[order[~same]] = False
    return out, usable, int((~same).sum()), int(fell.sum())


def _series_info(
    name: str, ts: npt.NDArray[np.float64], empty: int, dups: int, zone: str | None, sensors: tuple[str, ...]
) -> SeriesInfo:
    if len(ts) < 2:
        start = float(ts[0]) if len(ts) else float("nan")
        return SeriesInfo(
            name, len(ts), start, start, 60.0, False, empty=empty, duplicates=dups, zone=zone, sensors=sensors
        )
    step = np.diff(ts)
    interval = float(np.median(step))
    long = step > 1.5 * interval
    missing = int(np.sum(np.round(step[long] / interval) - 1)) if long.any() else 0
    return SeriesInfo(
        name,
        len(ts),
        float(ts[0]),
        float(ts[-1]),
        interval,
        True,
        gaps=int(long.sum()),
        missing_steps=missing,
        largest_gap_s=float(step.max()) if long.any() else 0.0,
        empty=empty,
        duplicates=dups,
        zone=zone,
        sensors=sensors,
    )
