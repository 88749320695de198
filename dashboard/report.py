"""The street office's daily report: a pure builder from the store's history and the alert manager's figures.

`daily_report()` takes what the API fetched (history rows per zone, the day's alerts as `alerts.encode.alert_json`
dicts, and `AlertActions.response_metrics(since, until)`) and returns a `DailyReport`; it reads no clock and no
store. `report_csv()` writes the same report as one CSV with a block per section. docs/report.md explains
every figure.

- The day is 00:00 to 24:00 in the site's timezone. A report for the day of the data time (the newest event
  time the service has seen) is `partial`: it covers the day up to that time.
- Arrivals count entries into zones (each zone's `arrivals_today` counter, its maximum over the day), so a
  person who visits three zones counts three times; the grid and district figures are sums of those zone
  counts. A zone whose rows carry no `arrivals_today` is unknown and left out of the sums, never counted as
  zero; `arrivals_zones` says how many zones a sum covers.
- Peak people at once (grid, district): the largest sum of the zones' one-minute mean occupancy over the same
  minute; `peak_zones` says how many zones had data in that minute.
- Response times are the manager's (alerts/metrics.py), passed through, not recomputed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from domain.levels import GRADED, Level
from domain.site import Site

Row = Mapping[str, Any]
"""A history row from `store.base.Store.history`: "ts" plus HISTORY_FIELDS; any field may be missing."""

LEVEL_ZH: Mapping[Level, str] = {
    Level.NORMAL: "正常",
    Level.IV: "IV级蓝色",
    Level.III: "III级黄色",
    Level.II: "II级橙色",
    Level.I: "I级红色",
}
LEVEL_NAMES: tuple[str, ...] = tuple(lv.name for lv in GRADED)  # "IV", "III", "II", "I"


class LevelInfo(msgspec.Struct, frozen=True, kw_only=True):
    severity: int
    name: str
    label: str
    label_zh: str
    colour: str


class ZoneRow(msgspec.Struct, kw_only=True):
    zone: str
    name_zh: str
    name_en: str
    grid: str
    kind: str
    capacity: int
    minutes: int  # one-minute rows with an occupancy that day
    peak_occupancy: int | None  # largest one-minute mean, whole people
    peak_ts: float | None
    peak_at: str | None  # local ISO 8601
    peak_share: float | None  # of capacity, fraction to 0.0001
    worst_level: int | None  # severity 0..4; None: no row carried a level
    worst_level_ts: float | None  # when the zone first reached its worst level that day
    worst_level_at: str | None
    arrivals: int | None  # entries into this zone that day; None: unknown


class AlertCounts(msgspec.Struct, kw_only=True):
    total: int
    by_level: dict[str, int]  # "IV", "III", "II", "I" (peak level of each alert), always all four


class ResponseFigures(msgspec.Struct, kw_only=True):
    """One row of `response_metrics` (alerts/metrics.py) as given, plus `unacknowledged` = alerts - acknowledged."""

    alerts: int = 0
    acknowledged: int = 0
    unacknowledged: int = 0
    unacknowledged_past_target: int = 0
    open: int = 0
    ack_median_s: float | None = None
    ack_p90_s: float | None = None
    ack_within_target: float | None = None
    ack_judged: int = 0
    resolved: int = 0
    resolve_judged: int = 0
    resolve_median_s: float | None = None
    resolve_p90_s: float | None = None
    resolve_within_target: float | None = None


class GridRow(msgspec.Struct, kw_only=True):
    grid: str
    name_zh: str
    name_en: str
    zones: int
    arrivals: int | None  # sum over the zones whose arrivals are known; None: none known
    arrivals_zones: int
    peak_people: int | None
    peak_ts: float | None
    peak_at: str | None
    peak_zones: int  # zones with data in the peak minute
    alerts: AlertCounts | None  # None: no alert manager
    response: ResponseFigures | None  # None: no alert manager, or no alert in this grid that day


class Headline(msgspec.Struct, kw_only=True):
    peak_people: int | None
    peak_ts: float | None
    peak_at: str | None
    peak_zones: int
    zones_total: int
    arrivals: int | None
    arrivals_zones: int
    alerts: AlertCounts | None
    response: ResponseFigures | None  # the manager's "overall" row


class AlertLine(msgspec.Struct, kw_only=True):
    id: str
    zone: str
    zone_name_zh: str
    zone_name_en: str
    grid: str
    peak_level: int
    cause: str
    state: str
    opened_ts: float | None
    opened_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str
    resolved_at: str | None


class DailyReport(msgspec.Struct, kw_only=True):
    site: str
    site_name_zh: str
    site_name_en: str
    timezone: str
    date: str  # YYYY-MM-DD, local
    start_ts: float
    end_ts: float
    start_at: str
    end_at: str
    partial: bool  # the day is not over in the data: figures run up to data_until
    data_until_ts: float | None
    data_until_at: str | None
    levels: list[LevelInfo]
    ack_targets_s: dict[str, float] | None  # by level name, from the manager
    headline: Headline
    zones: list[ZoneRow]
    grids: list[GridRow]
    alerts: list[AlertLine] | None  # the day's alerts, oldest first; None: no alert manager
    notes: list[str]  # what is missing, in words


# ---- the day ----------------------------------------------------------------------------------------


def day_window(site: Site, day: dt.date) -> tuple[float, float]:
    """[start, end) of `day` in the site's timezone, epoch seconds (23 or 25 h long across a DST change)."""
    tz = ZoneInfo(site.info.timezone)
    start = dt.datetime.combine(day, dt.time(), tz).timestamp()
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).timestamp()
    return start, end


def day_of(site: Site, ts: float) -> dt.date:
    """The local date of an instant in the site's timezone."""
    return dt.datetime.fromtimestamp(ts, ZoneInfo(site.info.timezone)).date()


# ---- the builder ------------------------------------------------------------------------------------


def daily_report(
    site: Site,
    day: dt.date,
    history: Mapping[str, Sequence[Row]],
    alerts: Sequence[Mapping[str, Any]] | None,
    response: Mapping[str, Any] | None,
    *,
    now: float,
) -> DailyReport:
    """The report for `day`.

    history: zone id -> its rows for the day (`Store.history(zone, start, end, every_s=60)`); rows outside
        the day are ignored, a zone left out has no data.
    alerts: `AlertActions.list_alerts(AlertFilter(state="all", since=start, until=end))`; None: no manager.
    response: `AlertActions.response_metrics(start, end)`; None: no manager.
    now: the data time. A day after its day raises ValueError; the day of it gives a partial report.
    """
    tz = ZoneInfo(site.info.timezone)
    start, end = day_window(site, day)
    today = day_of(site, now)
    if day > today:
        raise ValueError(f"{day.isoformat()} is after the data's day {today.isoformat()}: there is no data for it yet")
    partial = day == today
    notes: list[str] = []  # what is missing, in words (the partial day has its own fields)

    zones: list[ZoneRow] = []
    minute_sums: dict[str, dict[float, list[float]]] = {}  # grid -> minute -> [people, zones]
    for z in site.zones.values():
        rows = [r for r in history.get(z.id, ()) if (t := _num(r, "ts")) is not None and start <= t < end]
        row = _zone_row(z.id, z.name_zh, z.name_en, z.grid, z.kind, z.capacity, rows, tz)
        zones.append(row)
        sums = minute_sums.setdefault(z.grid, {})
        for r in rows:
            occ = _num(r, "occupancy")
            if occ is not None:
                acc = sums.setdefault(float(r["ts"]), [0.0, 0.0])
                acc[0] += occ
                acc[1] += 1
    no_arrivals = [z.zone for z in zones if z.arrivals is None and z.minutes > 0]
    if no_arrivals:
        notes.append(f"arrivals unknown for {len(no_arrivals)} zone(s) with data (left out of the sums, not zero)")
    no_data = [z.zone for z in zones if z.minutes == 0]
    if no_data:
        notes.append(f"no data that day for {len(no_data)} of {len(zones)} zone(s)")

    alert_lines = None if alerts is None else _alert_lines(alerts, site, tz)
    if alerts is None:
        notes.append("no alert manager: alert and response figures are not available")
    resp_by_grid = {} if response is None else {str(r.get("grid", "")): r for r in response.get("by_grid", ())}

    grid_ids = list(site.grids)
    for extra in sorted({a.grid for a in alert_lines or ()} | set(resp_by_grid)):
        if extra not in site.grids:
            grid_ids.append(extra)  # a grid dropped from the site file since: its alerts still count
    grids: list[GridRow] = []
    for gid in grid_ids:
        g = site.grids.get(gid)
        members = [z for z in zones if z.grid == gid]
        arrivals, arrivals_zones = _sum_known(z.arrivals for z in members)
        peak = _peak_minute(minute_sums.get(gid, {}))
        grids.append(
            GridRow(
                grid=gid,
                name_zh=g.name_zh if g else gid,
                name_en=g.name_en if g else (gid or "(no grid)"),
                zones=len(members),
                arrivals=arrivals,
                arrivals_zones=arrivals_zones,
                peak_people=None if peak is None else round(peak[1]),
                peak_ts=None if peak is None else peak[0],
                peak_at=None if peak is None else _iso(peak[0], tz),
                peak_zones=0 if peak is None else int(peak[2]),
                alerts=None if alert_lines is None else _count([a for a in alert_lines if a.grid == gid]),
                response=None if gid not in resp_by_grid else _figures(resp_by_grid[gid]),
            )
        )

    district: dict[float, list[float]] = {}
    for sums in minute_sums.values():
        for t, (people, n) in sums.items():
            acc = district.setdefault(t, [0.0, 0.0])
            acc[0] += people
            acc[1] += n
    peak = _peak_minute(district)
    arrivals, arrivals_zones = _sum_known(z.arrivals for z in zones)
    overall = None if response is None else response.get("overall")
    headline = Headline(
        peak_people=None if peak is None else round(peak[1]),
        peak_ts=None if peak is None else peak[0],
        peak_at=None if peak is None else _iso(peak[0], tz),
        peak_zones=0 if peak is None else int(peak[2]),
        zones_total=len(zones),
        arrivals=arrivals,
        arrivals_zones=arrivals_zones,
        alerts=None if alert_lines is None else _count(alert_lines),
        response=None if overall is None else _figures(overall),
    )
    targets = None if response is None else response.get("targets")
    return DailyReport(
        site=site.info.id,
        site_name_zh=site.info.name_zh,
        site_name_en=site.info.name_en,
        timezone=site.info.timezone,
        date=day.isoformat(),
        start_ts=start,
        end_ts=end,
        start_at=_iso(start, tz),
        end_at=_iso(end, tz),
        partial=partial,
        data_until_ts=now if partial else None,
        data_until_at=_iso(now, tz) if partial else None,
        levels=[
            LevelInfo(severity=int(lv), name=lv.name, label=lv.label, label_zh=LEVEL_ZH[lv], colour=lv.colour)
            for lv in Level
        ],
        ack_targets_s=None
        if targets is None
        else {name: float(t["ack_s"]) for name, t in targets.items() if isinstance(t, Mapping) and "ack_s" in t},
        headline=headline,
        zones=zones,
        grids=grids,
        alerts=alert_lines,
        notes=notes,
    )


def _zone_row(
    zid: str, name_zh: str, name_en: str, grid: str, kind: str, capacity: int, rows: Sequence[Row], tz: ZoneInfo
) -> ZoneRow:
    peak: tuple[float, float] | None = None  # (ts, occupancy); the first minute wins a tie
    share: float | None = None
    worst: tuple[int, float] | None = None  # (level, first ts at it)
    arrivals: float | None = None
    minutes = 0
    for r in sorted(rows, key=lambda r: float(r["ts"])):
        ts = float(r["ts"])
        occ = _num(r, "occupancy")
        if occ is not None:
            minutes += 1
            if peak is None or occ > peak[1]:
                peak = (ts, occ)
        s = _num(r, "share")
        if s is not None and (share is None or s > share):
            share = s
        lv = _num(r, "level")
        if lv is not None and (worst is None or int(lv) > worst[0]):
            worst = (int(lv), ts)
        a = _num(r, "arrivals_today")
        if a is not None and (arrivals is None or a > arrivals):
            arrivals = a
    return ZoneRow(
        zone=zid,
        name_zh=name_zh,
        name_en=name_en,
        grid=grid,
        kind=kind,
        capacity=capacity,
        minutes=minutes,
        peak_occupancy=None if peak is None else round(peak[1]),
        peak_ts=None if peak is None else peak[0],
        peak_at=None if peak is None else _iso(peak[0], tz),
        peak_share=None if share is None else round(share, 4),
        worst_level=None if worst is None else worst[0],
        worst_level_ts=None if worst is None else worst[1],
        worst_level_at=None if worst is None else _iso(worst[1], tz),
        arrivals=None if arrivals is None else round(arrivals),
    )


def _peak_minute(sums: Mapping[float, Sequence[float]]) -> tuple[float, float, float] | None:
    """(minute, people, zones counted) of the largest sum; the earliest minute wins a tie."""
    best: tuple[float, float, float] | None = None
    for t in sorted(sums):
        people, n = sums[t]
        if best is None or people > best[1]:
            best = (t, people, n)
    return best


def _sum_known(values: Iterable[int | None]) -> tuple[int | None, int]:
    known = [v for v in values if v is not None]
    return (sum(known) if known else None), len(known)


def _count(alerts: Sequence[AlertLine]) -> AlertCounts:
    by_level = dict.fromkeys(LEVEL_NAMES, 0)
    for a in alerts:
        lv = _as_level(a.peak_level)
        if lv is not None and lv.name in by_level:
            by_level[lv.name] += 1
    return AlertCounts(total=len(alerts), by_level=by_level)


def _figures(row: Mapping[str, Any]) -> ResponseFigures:
    f = msgspec.convert(row, ResponseFigures)  # the manager's row as is; keys it does not give stay default
    f.unacknowledged = max(0, f.alerts - f.acknowledged)
    return f


def _alert_lines(alerts: Sequence[Mapping[str, Any]], site: Site, tz: ZoneInfo) -> list[AlertLine]:
    out = []
    for a in alerts:
        zone = str(a.get("zone", ""))
        z = site.zones.get(zone)
        peak = a.get("peak_level")
        severity = peak.get("severity") if isinstance(peak, Mapping) else peak
        opened = _num(a, "opened_ts")
        out.append(
            AlertLine(
                id=str(a.get("id", "")),
                zone=zone,
                zone_name_zh=str(a.get("zone_name_zh") or (z.name_zh if z else zone)),
                zone_name_en=str(a.get("zone_name") or (z.name_en if z else zone)),
                grid=str(a.get("grid") or (z.grid if z else "")),
                peak_level=int(severity) if isinstance(severity, int | float) else 0,
                cause=str(a.get("cause", "")),
                state=str(a.get("state", "")),
                opened_ts=opened,
                opened_at=None if opened is None else _iso(opened, tz),
                acknowledged_at=_opt_str(a.get("acknowledged_at")),
                acknowledged_by=str(a.get("acknowledged_by") or ""),
                resolved_at=_opt_str(a.get("resolved_at")),
            )
        )
    out.sort(key=lambda x: (x.opened_ts if x.opened_ts is not None else math.inf, x.id))
    return out


def _num(row: Mapping[str, Any], key: str) -> float | None:
    """A finite number, or None: a missing key, null or NaN is unknown, never zero."""
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _opt_str(v: object) -> str | None:
    return None if v is None else str(v)


def _iso(ts: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def _hhmm(ts: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ts, tz).strftime("%H:%M")


# ---- CSV ----------------------------------------------------------------------------------------------

CSV_SECTIONS: tuple[str, ...] = ("report", "headline", "zones", "grids", "response", "alerts")


def report_csv(r: DailyReport) -> str:
    """The report as CSV text (the caller adds the UTF-8 BOM): one block per section.

    Each block is a marker row `[name]` with a bilingual title, a header row, its rows, then an empty row.
    Blocks rather than one table with a "section" column: the sections have different columns, so one table
    would be mostly empty cells and a filter or sort would mix zones with grids; separate blocks open in a
    spreadsheet as the tables the page shows, and each can be selected and made a table of its own.
    Times are local HH:MM (MM-DD HH:MM when not on the report's day), shares percent, response times minutes;
    an unknown figure is an empty cell.
    """
    tz = ZoneInfo(r.timezone)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")

    def block(name: str, title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        w.writerow([f"[{name}]", title])
        w.writerow(header)
        for row in rows:
            w.writerow([_cell(c) for c in row])
        w.writerow([])

    h = r.headline
    block(
        "report",
        "报告 Report",
        ["项目 Item", "值 Value"],
        [
            ["站点 Site", f"{r.site_name_zh} {r.site_name_en}"],
            ["日期 Date", r.date],
            ["时区 Timezone", r.timezone],
            ["开始 From", r.start_at],
            ["结束 To", r.end_at],
            ["不完整 Partial", "yes 是" if r.partial else "no 否"],
            ["数据截至 Data until", r.data_until_at or ""],
            *(["说明 Note", n] for n in r.notes),
        ],
    )
    resp = h.response
    block(
        "headline",
        "概要 Headline",
        ["指标 Figure", "值 Value", "时间 Time"],
        [
            ["同时在场峰值 Peak people at once", h.peak_people, _time(h.peak_ts, tz)],
            ["到访人次 Arrivals (entries into zones)", h.arrivals, ""],
            ["到访已知区域 Zones with arrivals known", f"{h.arrivals_zones}/{h.zones_total}", ""],
            ["预警总数 Alerts raised", None if h.alerts is None else h.alerts.total, ""],
            *(
                [
                    f"{LEVEL_ZH[Level[n]]} {Level[n].label} alerts",
                    None if h.alerts is None else h.alerts.by_level[n],
                    "",
                ]
                for n in LEVEL_NAMES
            ),
            [
                "确认时间中位数 Median time to acknowledge (min)",
                _minutes(None if resp is None else resp.ack_median_s),
                "",
            ],
            [
                "确认时间P90 90th percentile time to acknowledge (min)",
                _minutes(None if resp is None else resp.ack_p90_s),
                "",
            ],
            ["按时确认率 Acknowledged within target (%)", _pct(None if resp is None else resp.ack_within_target), ""],
            ["未确认 Unacknowledged", None if resp is None else resp.unacknowledged, ""],
        ],
    )
    block(
        "zones",
        "各区域 Zones",
        ["区域ID Zone id", "区域 Zone (zh)", "Zone (en)", "网格 Grid", "容量 Capacity", "峰值人数 Peak occupancy",
         "峰值时间 Peak time", "峰值占容量 Peak share of capacity (%)", "最高等级 Worst level",
         "最高等级时间 Worst level first at", "到访人次 Arrivals", "有数据分钟 Minutes with data"],
        [
            [z.zone, z.name_zh, z.name_en, z.grid, z.capacity, z.peak_occupancy, _time(z.peak_ts, tz),
             _pct(z.peak_share), _level(z.worst_level), _time(z.worst_level_ts, tz), z.arrivals, z.minutes]
            for z in r.zones
        ],
    )  # fmt: skip
    block(
        "grids",
        "各网格 Grids",
        ["网格ID Grid id", "网格 Grid (zh)", "Grid (en)", "区域数 Zones", "到访人次 Arrivals",
         "到访已知区域 Zones with arrivals known", "同时在场峰值 Peak people at once", "峰值时间 Peak time",
         "预警总数 Alerts", *(f"{LEVEL_ZH[Level[n]]} {n}" for n in LEVEL_NAMES)],
        [
            [g.grid, g.name_zh, g.name_en, g.zones, g.arrivals, g.arrivals_zones, g.peak_people, _time(g.peak_ts, tz),
             None if g.alerts is None else g.alerts.total,
             *((None if g.alerts is None else g.alerts.by_level[n]) for n in LEVEL_NAMES)]
            for g in r.grids
        ],
    )  # fmt: skip
    block(
        "response",
        "响应时间 Response times",
        ["网格ID Grid id", "网格 Grid (zh)", "Grid (en)", "预警 Alerts", "已确认 Acknowledged",
         "未确认 Unacknowledged", "超时未确认 Unacknowledged past target", "确认中位数 Median ack (min)",
         "确认P90 P90 ack (min)", "按时确认率 Within target (%)", "已评判 Judged"],
        [
            [gid, zh, en, f.alerts, f.acknowledged, f.unacknowledged, f.unacknowledged_past_target,
             _minutes(f.ack_median_s), _minutes(f.ack_p90_s), _pct(f.ack_within_target), f.ack_judged]
            for gid, zh, en, f in [
                *((g.grid, g.name_zh, g.name_en, g.response) for g in r.grids if g.response is not None),
                *([("district", r.site_name_zh, r.site_name_en, resp)] if resp is not None else []),
            ]
        ],
    )  # fmt: skip
    block(
        "alerts",
        "预警列表 Alerts",
        ["预警ID Alert id", "开始时间 Opened", "区域ID Zone id", "区域 Zone (zh)", "Zone (en)", "网格 Grid",
         "最高等级 Peak level", "原因 Cause", "状态 State", "确认时间 Acknowledged", "确认人 By", "解除时间 Resolved"],
        [
            [a.id, _day_time(a.opened_ts, tz, r.date), a.zone, a.zone_name_zh, a.zone_name_en, a.grid,
             _level(a.peak_level), a.cause, a.state, _iso_day_time(a.acknowledged_at, r.date), a.acknowledged_by,
             _iso_day_time(a.resolved_at, r.date)]
            for a in r.alerts or ()
        ],
    )  # fmt: skip
    return out.getvalue()


def _cell(c: object) -> object:
    if c is None:
        return ""
    if isinstance(c, str) and c[:1] in ("=", "+", "-", "@"):
        return "'" + c  # a spreadsheet would run it as a formula
    return c


def _time(ts: float | None, tz: ZoneInfo) -> str:
    return "" if ts is None else _hhmm(ts, tz)


def _day_time(ts: float | None, tz: ZoneInfo, day: str) -> str:
    """HH:MM on the report's day; MM-DD HH:MM on another (an alert resolved after midnight, or opened before)."""
    if ts is None:
        return ""
    t = dt.datetime.fromtimestamp(ts, tz)
    return t.strftime("%H:%M" if t.date().isoformat() == day else "%m-%d %H:%M")


def _iso_day_time(iso: str | None, day: str) -> str:
    """As _day_time, from alerts/encode.py's local ISO text: "2026-01-02T00:12:05+08:00" -> "01-02 00:12"."""
    if not iso:
        return ""
    return iso[11:16] if iso[:10] == day else f"{iso[5:10]} {iso[11:16]}"


def _pct(share: float | None) -> float | None:
    return None if share is None else round(share * 100, 1)


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _as_level(severity: int | None) -> Level | None:
    try:
        return None if severity is None else Level(severity)
    except ValueError:
        return None


def _level(severity: int | None) -> str:
    lv = _as_level(severity)
    if lv is None:
        return ""
    return f"{LEVEL_ZH[lv]} {lv.label}" if lv is not Level.NORMAL else f"{LEVEL_ZH[lv]} normal"
