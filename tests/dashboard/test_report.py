"""The daily report: the builder on hand-made rows, then the API through the app on a real embedded store and a
real alert manager, and the CSV a spreadsheet opens.

Day: Wednesday 2026-12-02 in Shanghai (the alert manager rig's day).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import msgspec
import pytest

from alerts.actions import AlertFilter
from alerts.encode import alert_json
from alerts.metrics import response_metrics
from dashboard.app import STATIC_DIR, create_app
from dashboard.auth import Principal, token_table
from dashboard.hub import Hub
from dashboard.report import CSV_SECTIONS, DailyReport, daily_report, day_window, report_csv
from domain.clock import ManualClock
from domain.levels import Level
from domain.site import Grid, MicroGrid, Site
from domain.values import Alert, AlertChange, ZoneState
from store.base import HISTORY_FIELDS
from store.embedded import EmbeddedStore
from tests.alerts.test_manager import Rig, det
from tests.dashboard.client import TestClient
from tests.dashboard.test_static import ABSOLUTE_URL

TZ = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 12, 2)


WALL = "t-wall"
WALL_AUTH = {"Authorization": f"Bearer {WALL}"}


def at(h: int, m: int = 0, s: int = 0, day: dt.date = DAY) -> float:
    return dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=TZ).timestamp()


def row(ts: float, occ: float, *, capacity: int = 2000, level: int = 0, **extra: Any) -> dict[str, Any]:
    return {"ts": ts, "occupancy": occ, "share": occ / capacity, "level": float(level), **extra}


@pytest.fixture(scope="module")
def site(mini_site: Site) -> Site:
    """The mini site with the plaza moved to a second grid, "town"."""
    spec = mini_site.file
    town = Grid(id="town", name_zh="镇区", name_en="Town", kind="residential")
    mg = MicroGrid(id="tw-01", grid="town", name_zh="镇一", name_en="Town 1")
    zones = tuple(
        msgspec.structs.replace(z, grid="town", micro_grid="tw-01") if z.id == "plaza" else z for z in spec.zones
    )
    return Site(
        msgspec.structs.replace(spec, grids=(*spec.grids, town), micro_grids=(*spec.micro_grids, mg), zones=zones)
    )


def build(
    site: Site,
    history: dict[str, list[dict[str, Any]]],
    alerts: Sequence[dict[str, Any]] | None = (),
    response: dict[str, Any] | None = None,
    *,
    day: dt.date = DAY,
    now: float | None = None,
) -> DailyReport:
    if response is None and alerts is not None:
        response = response_metrics([], now=at(23, 59))
    return daily_report(site, day, history, alerts, response, now=at(10) if now is None else now)


def zone(r: DailyReport, zid: str) -> Any:
    return next(z for z in r.zones if z.zone == zid)


def grid(r: DailyReport, gid: str) -> Any:
    return next(g for g in r.grids if g.grid == gid)


# ---- the builder --------------------------------------------------------------------------------------


def test_peak_occupancy_is_the_first_largest_minute_at_its_local_time(site: Site) -> None:
    rows = [
        row(at(0, 0) - 60, 1990),  # 23:59 the day before: not this day's
        row(at(19, 40), 1500),
        row(at(19, 41), 1900, level=3),
        row(at(19, 42), 1900, level=3),  # a tie: the first minute is the peak
        row(at(19, 43), 1200, level=1),
    ]
    r = build(site, {"seg-1": rows}, day=DAY, now=at(9, day=DAY + dt.timedelta(days=1)))
    z = zone(r, "seg-1")
    assert (z.peak_occupancy, z.peak_ts, z.peak_at) == (1900, at(19, 41), "2026-12-02T19:41:00+08:00")
    assert z.peak_share == 0.95 and z.minutes == 4
    assert (z.worst_level, z.worst_level_at) == (3, "2026-12-02T19:41:00+08:00")
    assert (r.start_at, r.end_at) == ("2026-12-02T00:00:00+08:00", "2026-12-03T00:00:00+08:00")
    assert r.date == "2026-12-02" and not r.partial and r.data_until_at is None
    empty = zone(r, "seg-2")
    assert (empty.minutes, empty.peak_occupancy, empty.peak_at, empty.worst_level) == (0, None, None, None)
    assert any("no data that day for 2 of 3" in n for n in r.notes)


def test_grid_peak_people_at_once_is_the_largest_same_minute_sum_not_the_sum_of_peaks(site: Site) -> None:
    history = {
        "seg-1": [row(at(19, 41), 1900), row(at(20, 0), 1000)],
        "seg-2": [row(at(19, 41), 500), row(at(20, 0), 1800)],
        "plaza": [row(at(19, 41), 700, capacity=1500), row(at(20, 0), 100, capacity=1500)],
    }
    r = build(site, history)
    riverside = grid(r, "riverside")
    assert (riverside.peak_people, riverside.peak_at, riverside.peak_zones) == (2800, "2026-12-02T20:00:00+08:00", 2)
    town = grid(r, "town")
    assert (town.peak_people, town.peak_at, town.zones) == (700, "2026-12-02T19:41:00+08:00", 1)
    h = r.headline
    assert (h.peak_people, h.peak_at, h.peak_zones, h.zones_total) == (3100, "2026-12-02T19:41:00+08:00", 3, 3)


def test_missing_arrivals_are_unknown_never_zero(site: Site) -> None:
    history = {
        "seg-1": [row(at(9), 100, arrivals_today=1200), row(at(10), 100, arrivals_today=4000)],
        "seg-2": [row(at(9), 100), row(at(10), 100)],  # the store gave no arrivals for this zone
        "plaza": [
            row(at(9), 100, capacity=1500, arrivals_today=0),  # known: nobody came yet
            row(at(10), 100, capacity=1500, arrivals_today=None),
            row(at(11), 100, capacity=1500, arrivals_today=float("nan")),
        ],
    }
    r = build(site, history, now=at(12))
    assert [zone(r, z).arrivals for z in ("seg-1", "seg-2", "plaza")] == [4000, None, 0]
    riverside = grid(r, "riverside")
    assert (riverside.arrivals, riverside.arrivals_zones, riverside.zones) == (4000, 1, 2)
    assert (grid(r, "town").arrivals, grid(r, "town").arrivals_zones) == (0, 1)
    assert (r.headline.arrivals, r.headline.arrivals_zones) == (4000, 2)
    assert any("arrivals unknown for 1 zone" in n for n in r.notes)
    none_known = build(site, {"seg-2": [row(at(9), 100)]})
    assert none_known.headline.arrivals is None and grid(none_known, "riverside").arrivals is None


def test_the_data_days_report_is_partial_up_to_the_data_time(site: Site) -> None:
    history = {"seg-1": [row(at(8), 300), row(at(14, 5), 900)]}
    r = build(site, history, now=at(14, 5, 30))
    assert r.partial and r.data_until_ts == at(14, 5, 30) and r.data_until_at == "2026-12-02T14:05:30+08:00"
    assert not any("partial" in n for n in r.notes)  # said by the fields, not twice
    assert zone(r, "seg-1").peak_at == "2026-12-02T14:05:00+08:00"
    yesterday = build(site, {}, day=DAY - dt.timedelta(days=1), now=at(14))
    assert not yesterday.partial and yesterday.data_until_at is None
    with pytest.raises(ValueError, match="2026-12-03 is after the data's day 2026-12-02"):
        build(site, {}, day=DAY + dt.timedelta(days=1), now=at(14))


def _alert(aid: str, zone: str, peak: Level, opened: float, *, ack: float | None = None, by: str = "ann") -> Alert:
    history = [AlertChange(ts=ack, state="acknowledged", level=peak, by=by, action="acknowledged")] if ack else []
    return Alert(
        id=aid, zone=zone, level=peak, peak_level=peak, cause="capacity",
        state="acknowledged" if ack else "raised", opened_at=opened, updated_at=ack or opened,
        acknowledged_at=ack, acknowledged_by=by if ack else "", history=history,
    )  # fmt: skip


def _day_alerts(site: Site) -> list[Alert]:
    return [
        _alert("a1", "seg-1", Level.II, at(19, 30), ack=at(19, 31)),
        _alert("a2", "seg-2", Level.I, at(19, 35), ack=at(19, 38)),
        _alert("a3", "seg-1", Level.IV, at(9, 0)),
        _alert("a4", "plaza", Level.III, at(20, 0), ack=at(20, 4)),
        _alert("a5", "plaza", Level.III, at(21, 0)),
    ]


def day_alerts_and_response(site: Site) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    alerts = _day_alerts(site)
    for a in alerts:
        a.grid = site.zones[a.zone].grid  # as the manager stores them
    return [alert_json(a, site) for a in alerts], response_metrics(alerts, now=at(22))


def test_alerts_are_counted_by_peak_level_and_by_grid(site: Site) -> None:
    alerts = [alert_json(a, site) for a in _day_alerts(site)]
    r = build(site, {}, alerts, now=at(22))
    h = r.headline.alerts
    assert h is not None and h.total == 5 and h.by_level == {"IV": 1, "III": 2, "II": 1, "I": 1}
    riverside, town = grid(r, "riverside").alerts, grid(r, "town").alerts
    assert riverside is not None and town is not None
    assert (riverside.total, riverside.by_level) == (3, {"IV": 1, "III": 0, "II": 1, "I": 1})
    assert (town.total, town.by_level) == (2, {"IV": 0, "III": 2, "II": 0, "I": 0})
    assert r.alerts is not None and [a.id for a in r.alerts] == ["a3", "a1", "a2", "a4", "a5"]  # oldest first
    a1 = r.alerts[1]
    assert (a1.zone_name_zh, a1.grid, a1.peak_level, a1.acknowledged_by) == ("滨江步道1段", "riverside", 3, "ann")


def test_response_figures_are_the_managers_passed_through(site: Site) -> None:
    alerts, response = day_alerts_and_response(site)
    r = build(site, {}, alerts, response, now=at(22))
    overall = r.headline.response
    assert overall is not None
    given = response["overall"]
    for key in ("alerts", "acknowledged", "ack_median_s", "ack_p90_s", "ack_within_target", "ack_judged",
                "unacknowledged_past_target", "open", "resolved"):  # fmt: skip
        assert getattr(overall, key) == given[key], key
    assert overall.unacknowledged == given["alerts"] - given["acknowledged"] == 2
    assert [g["grid"] for g in response["by_grid"]] == ["riverside", "town"]  # worst first: 1 of 3 in time
    for given_row in response["by_grid"]:
        f = grid(r, given_row["grid"]).response
        assert f is not None
        for key, value in given_row.items():
            if key != "grid":
                assert getattr(f, key) == value, (given_row["grid"], key)
    assert grid(r, "town").response.unacknowledged == 1
    assert r.ack_targets_s == {"I": 120.0, "II": 300.0, "III": 600.0, "IV": 1200.0}


def test_without_an_alert_manager_alert_figures_are_unknown(site: Site) -> None:
    r = daily_report(site, DAY, {"seg-1": [row(at(9), 100)]}, None, None, now=at(10))
    assert r.alerts is None and r.headline.alerts is None and r.headline.response is None
    assert all(g.alerts is None and g.response is None for g in r.grids)
    assert "no alert manager: alert and response figures are not available" in r.notes


def test_a_grid_no_longer_in_the_site_keeps_its_alerts(site: Site) -> None:
    gone = {**alert_json(_alert("g1", "seg-1", Level.II, at(9)), site), "zone": "old-zone", "grid": "old-grid"}
    r = build(site, {}, [gone])
    old = grid(r, "old-grid")
    assert old.zones == 0 and old.alerts is not None and old.alerts.by_level["II"] == 1


# ---- CSV ------------------------------------------------------------------------------------------------


def sections(text: str) -> dict[str, list[list[str]]]:
    """The CSV's blocks: "[name]" marker row -> the rows after it (header first) up to the empty row."""
    out: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))):
        if r and re.fullmatch(r"\[\w+\]", r[0]):
            current = out.setdefault(r[0][1:-1], [])
        elif not r:
            current = None
        elif current is not None:
            current.append(r)
    return out


def test_csv_has_every_section_as_a_block_with_its_header(site: Site) -> None:
    history = {"seg-1": [row(at(19, 41), 1900, level=3, arrivals_today=4000)], "plaza": [row(at(9), 50)]}
    alerts, response = day_alerts_and_response(site)
    alerts[0]["acknowledged_by"] = "=HYPERLINK(1)"  # a formula from any text field is not run by Excel
    text = report_csv(build(site, history, alerts, response, now=at(22)))
    s = sections(text)
    assert list(s) == list(CSV_SECTIONS)
    zones = {r[0]: dict(zip(s["zones"][0], r, strict=True)) for r in s["zones"][1:]}
    assert list(zones) == ["seg-1", "seg-2", "plaza"]
    seg1 = zones["seg-1"]
    assert seg1["峰值人数 Peak occupancy"] == "1900" and seg1["峰值时间 Peak time"] == "19:41"
    assert seg1["峰值占容量 Peak share of capacity (%)"] == "95.0" and seg1["到访人次 Arrivals"] == "4000"
    assert seg1["最高等级 Worst level"] == "II级橙色 II orange"
    assert zones["seg-2"]["峰值人数 Peak occupancy"] == "" and zones["plaza"]["到访人次 Arrivals"] == ""
    grids = {r[0]: dict(zip(s["grids"][0], r, strict=True)) for r in s["grids"][1:]}
    assert grids["riverside"]["I级红色 I"] == "1" and grids["town"]["III级黄色 III"] == "2"
    headline = {r[0]: r[1] for r in s["headline"][1:]}
    assert headline["同时在场峰值 Peak people at once"] == "1900" and headline["预警总数 Alerts raised"] == "5"
    assert [r[0] for r in s["response"][1:]] == ["riverside", "town", "district"]
    alert_rows = {r[0]: r for r in s["alerts"][1:]}
    assert alert_rows["a1"][10] == "'=HYPERLINK(1)"
    assert len(s["alerts"]) == 6


def test_csv_alert_times_on_another_day_carry_their_date(site: Site) -> None:
    """An alert of 23:50 acknowledged at 00:05 and resolved at 00:40: the next day's times say which day."""
    late = _alert("late", "seg-1", Level.II, at(23, 50), ack=at(0, 5, day=DAY + dt.timedelta(days=1)))
    late.state, late.resolved_at, late.level = "resolved", at(0, 40, day=DAY + dt.timedelta(days=1)), Level.NORMAL
    early = _alert("early", "seg-2", Level.III, at(23, 55, day=DAY - dt.timedelta(days=1)), ack=at(9, 1))
    same = _alert("same", "plaza", Level.IV, at(19, 30), ack=at(19, 31))
    alerts = [alert_json(a, site) for a in (late, early, same)]
    s = sections(report_csv(build(site, {}, alerts, now=at(23, 59))))
    header = s["alerts"][0]
    rows = {r[0]: dict(zip(header, r, strict=True)) for r in s["alerts"][1:]}
    times = ("开始时间 Opened", "确认时间 Acknowledged", "解除时间 Resolved")
    assert [rows["late"][k] for k in times] == ["23:50", "12-03 00:05", "12-03 00:40"]
    assert [rows["early"][k] for k in times] == ["12-01 23:55", "09:01", ""]
    assert [rows["same"][k] for k in times] == ["19:30", "19:31", ""]


# ---- the API, on a real embedded store and a real alert manager --------------------------------------------

T0 = at(10)  # tests.alerts.test_manager's T0: the roster's day shift


class Recording:
    """The manager with the thread of each call recorded (it must run on the event loop, not in a worker)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.threads: set[int] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def list_alerts(self, f: AlertFilter) -> list[dict[str, Any]]:
        self.threads.add(threading.get_ident())
        return self.inner.list_alerts(f)  # type: ignore[no-any-return]

    def response_metrics(self, since: float | None, until: float | None) -> dict[str, Any]:
        self.threads.add(threading.get_ident())
        return self.inner.response_metrics(since, until)  # type: ignore[no-any-return]


def day_states(start: float, minutes: int) -> Iterator[ZoneState]:
    """One state per zone per minute from `start`: seg-1 peaks at 09:30 (II orange), seg-2 at 02:00."""
    for i in range(minutes):
        ts = start + i * 60
        for zid, cap, occ in (
            ("seg-1", 2000, 1850.0 if ts == at(9, 30) else 500.0),
            ("seg-2", 2000, 1200.0 if ts == at(2, 0) else 400.0),
            ("plaza", 1500, 300.0),
        ):
            yield ZoneState(
                zone=zid, ts=ts, occupancy=occ, capacity=cap, share=occ / cap, density=occ / 2000,
                inflow_per_min=5.0, outflow_per_min=5.0, arrivals_today=i * (3 if zid == "plaza" else 10),
                level=Level.II if occ == 1850.0 else Level.NORMAL,
            )  # fmt: skip


@pytest.fixture
def rig(mini_site: Site, tmp_path: Path) -> Rig:
    n = itertools.count(1)
    return Rig(mini_site, tmp_path / "alerts.sqlite", ManualClock(T0), lambda: f"a{next(n)}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    """A day from 00:00 to 10:15 written, then closed (every minute row on disk): 6 h in memory, the rest in
    SQLite, so the report reads both."""
    s = EmbeddedStore(tmp_path / "store.sqlite")
    s.write_states(list(day_states(at(0), 10 * 60 + 16)))
    s.close()
    yield s


class Api:
    """The app served in-process on the test's event loop (httpx's ASGI transport), as `crowdflow serve` runs it:
    the manager is called on the loop's thread, the store from worker threads."""

    def __init__(self, app: Any, actions: Recording, history_threads: list[int]) -> None:
        self.app = app
        self.actions = actions
        self.history_threads = history_threads

    async def get(self, path: str, **params: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=WALL_AUTH) as c:
            return await c.get(path, params=params)


@pytest.fixture
def api(mini_site: Site, rig: Rig, store: EmbeddedStore) -> Api:
    rig.step(det("seg-1", Level.II, 0))  # a1 at 10:00, acknowledged after 90 s
    rig.at(90).m.acknowledge("a1", "ann", "on my way")
    rig.at(300).step(det("plaza", Level.I, 300))  # a2 at 10:05, nobody answers
    rig.at(16 * 60)  # now 10:16
    actions = Recording(rig.m)
    history_threads: list[int] = []

    class Store:  # the embedded store, with the thread of each history call recorded
        def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[dict[str, float]]:
            history_threads.append(threading.get_ident())
            return store.history(zone, since, until, every_s=every_s)

    app = create_app(Hub(mini_site, clock=rig.clock), store=Store(), actions=actions, wall_tokens=[WALL])
    return Api(app, actions, history_threads)


async def test_report_json_from_the_store_and_the_manager(api: Api, rig: Rig) -> None:
    res = await api.get("/api/report/daily")  # default: the data time's day
    assert res.status_code == 200, res.text
    r = res.json()
    assert (r["date"], r["partial"], r["data_until_at"]) == ("2026-12-02", True, "2026-12-02T10:16:00+08:00")
    zones = {z["zone"]: z for z in r["zones"]}
    assert (zones["seg-1"]["peak_occupancy"], zones["seg-1"]["peak_at"]) == (1850, "2026-12-02T09:30:00+08:00")
    assert zones["seg-1"]["worst_level"] == int(Level.II) and zones["seg-1"]["peak_share"] == 0.925
    # 02:00 is more than the 6 h the store keeps in memory: read from its SQLite file.
    assert (zones["seg-2"]["peak_occupancy"], zones["seg-2"]["peak_at"]) == (1200, "2026-12-02T02:00:00+08:00")
    assert zones["plaza"]["minutes"] == 10 * 60 + 16
    h = r["headline"]
    assert (h["peak_people"], h["peak_at"], h["peak_zones"]) == (2550, "2026-12-02T09:30:00+08:00", 3)
    if "arrivals_today" in HISTORY_FIELDS:  # the store's rows carry arrivals (issue 5's data change)
        assert (zones["seg-1"]["arrivals"], h["arrivals"], h["arrivals_zones"]) == (6150, 6150 * 2 + 1845, 3)
    else:  # rows without arrivals: unknown, not zero
        assert (zones["seg-1"]["arrivals"], h["arrivals"], h["arrivals_zones"]) == (None, None, 0)
    assert h["alerts"] == {"total": 2, "by_level": {"IV": 0, "III": 0, "II": 1, "I": 1}}
    start, end = day_window(rig.site, DAY)
    given = rig.m.response_metrics(start, end)
    assert {k: h["response"][k] for k in given["overall"]} == given["overall"]
    assert h["response"]["ack_median_s"] == 90.0 and h["response"]["unacknowledged"] == 1
    assert h["response"]["unacknowledged_past_target"] == 1
    [riverside] = r["grids"]
    assert riverside["response"]["alerts"] == 2 and riverside["alerts"]["total"] == 2
    assert [a["id"] for a in r["alerts"]] == ["a1", "a2"] and r["alerts"][0]["acknowledged_by"] == "ann"
    # The store blocks: read in a worker thread; the manager is not thread-safe: called on the event loop.
    assert api.actions.threads == {threading.get_ident()}
    assert len(set(api.history_threads)) == 1 and threading.get_ident() not in api.history_threads


async def test_a_past_day_is_whole_and_has_no_alerts(api: Api) -> None:
    r = (await api.get("/api/report/daily", date="2026-12-01")).json()
    assert r["date"] == "2026-12-01" and not r["partial"] and r["data_until_at"] is None
    assert r["headline"]["peak_people"] is None and r["headline"]["alerts"]["total"] == 0
    assert r["headline"]["response"]["alerts"] == 0


async def test_the_report_is_for_the_desk_not_for_officers(mini_site: Site) -> None:
    """The report covers every zone: the wall, operator, command and admin read it; officers and grid
    leaders get 403 saying whom to ask; no token, 401."""
    officer = Principal(person="ann", name="Ann", role="officer", zones=frozenset({"seg-1"}))
    leader = Principal(person="lee", name="Lee", role="grid_leader", zones=frozenset({"seg-1", "seg-2", "plaza"}))
    app = create_app(Hub(mini_site, clock=ManualClock(T0)), authenticate=token_table({"t-ann": officer,
                     "t-lee": leader}), api_token="t-ops", wall_tokens=[WALL], admin_token="t-admin")  # fmt: skip
    c = TestClient(app)
    for path in ("/api/report/daily", "/api/report/daily.csv"):
        assert c.get(path).status_code == 401
        for token in ("t-ann", "t-lee"):
            r = c.get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 403 and "ask the command centre for the report" in r.json()["detail"]
        for token in (WALL, "t-ops", "t-admin"):  # allowed: here 503 only for the missing store
            assert c.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 503


async def test_csv_download(api: Api) -> None:
    res = await api.get("/api/report/daily.csv", date="2026-12-02")
    assert res.status_code == 200
    assert res.headers["content-type"] == "text/csv; charset=utf-8"
    assert res.headers["content-disposition"] == 'attachment; filename="crowdflow-report-mini-2026-12-02.csv"'
    assert res.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the file as UTF-8
    s = sections(res.content.decode("utf-8"))
    assert list(s) == list(CSV_SECTIONS)
    zones = {r[0]: r for r in s["zones"][1:]}
    assert zones["seg-1"][1] == "滨江步道1段" and zones["seg-1"][5:7] == ["1850", "09:30"]
    assert [r[0] for r in s["alerts"][1:]] == ["a1", "a2"]
    assert s["response"][-1][0] == "district" and s["response"][-1][3:5] == ["2", "1"]


@pytest.mark.parametrize("bad", ["2026-02-30", "02/12/2026", "yesterday", "2026-12-2", "2026-12-03"])
async def test_a_bad_date_is_422_saying_what_to_type(api: Api, bad: str) -> None:
    for path in ("/api/report/daily", "/api/report/daily.csv"):
        res = await api.get(path, date=bad)
        assert res.status_code == 422, (path, bad, res.text)
        assert "YYYY-MM-DD" in res.json()["detail"]


def test_no_store_is_503_saying_what_to_configure(mini_site: Site) -> None:
    c = TestClient(create_app(Hub(mini_site, clock=ManualClock(T0)), wall_tokens=[WALL]), headers=WALL_AUTH)
    res = c.get("/api/report/daily")
    assert res.status_code == 503 and "[influx] url" in res.json()["detail"]
    assert c.get("/api/report/daily", params={"date": "nope"}).status_code == 422  # the date is checked first


def test_a_failing_store_is_503(mini_site: Site) -> None:
    class Broken:
        def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[Any]:
            raise ConnectionError("influx down")

    c = TestClient(create_app(Hub(mini_site, clock=ManualClock(T0)), store=Broken(), wall_tokens=[WALL]),
                   headers=WALL_AUTH)  # fmt: skip
    res = c.get("/api/report/daily")
    assert res.status_code == 503 and "influx down" in res.json()["detail"]


def test_report_page_is_served_with_local_assets_only(hub: Hub) -> None:
    c = TestClient(create_app(hub))
    res = c.get("/report")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', res.text)
    assert sorted(r for r in refs if not r.startswith("/api/")) == ["report.css", "report.js"]
    for name in ("report.html", "report.js", "report.css"):
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        assert not ABSOLUTE_URL.findall(text), name
        assert c.get("/" + name).status_code == 200
