"""The street office's daily report: GET /api/report/daily (JSON) and /api/report/daily.csv (a download).

Both take `?date=YYYY-MM-DD` (a day in the site's timezone; default: the day of the data time, i.e. the newest
event time the service has seen, so a replayed evening reports its own day). Read-only; covering every zone,
it needs the "report.read" permission (wall, operator, command, admin: dashboard/policy.py). The builder
is dashboard/report.py; the figures are explained in docs/report.md.

The store's `history` blocks (SQLite or HTTP), so the day's rows are read in one worker thread; the alert
manager is not thread-safe and is driven from the event loop, so it is called here on the loop (two SQLite
queries).
"""

# No `from __future__ import annotations`: FastAPI evaluates the route signatures.
import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from alerts.actions import AlertActions, AlertFilter
from dashboard.access import Access
from dashboard.auth import Principal
from dashboard.hub import Hub
from dashboard.report import DailyReport, daily_report, day_of, day_window, report_csv
from domain.site import Site

HISTORY_STEP_S = 60.0  # one-minute rows: 35 zones x 1,440 rows a day
ALERTS_LIMIT = 100_000  # every alert of a day (a bad NYE raises a few hundred)
DATE_HINT = "give the day as YYYY-MM-DD, e.g. 2026-01-01 (a day in the site's timezone), or leave it out for today"
NO_STORE = (
    "no history store configured: the report reads the zones' history from the store. Run the service with "
    "the embedded store (the default: leave [influx] url empty; it keeps a SQLite file in [service] data_dir) "
    "or set [influx] url to an InfluxDB server"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_encoder = msgspec.json.Encoder()

DateParam = Annotated[str | None, Query(max_length=32, description="YYYY-MM-DD in the site's timezone")]


def report_router(
    hub: Hub, history: Callable[..., Sequence[object]] | None, actions: AlertActions | None, access: Access
) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["report"])
    site = hub.site
    Reader = Annotated[Principal, Depends(access.require("report.read"))]

    async def build(date: str | None) -> DailyReport:
        now = hub.data_ts if hub.data_ts is not None else hub.clock.now()
        day = _parse_day(date, site, now)
        if history is None:
            raise HTTPException(503, NO_STORE)
        start, end = day_window(site, day)
        alerts: list[dict[str, Any]] | None = None
        response: dict[str, Any] | None = None
        if actions is not None:
            try:
                alerts = actions.list_alerts(AlertFilter(state="all", since=start, until=end, limit=ALERTS_LIMIT))
                response = actions.response_metrics(start, end)
            except Exception as e:  # another component: say so rather than print a report without its alerts
                raise HTTPException(503, f"alert manager failed: {type(e).__name__}: {e}") from e
        call = functools.partial(_read_day, history, list(site.zones), start, end)
        try:
            rows = await anyio.to_thread.run_sync(call)
        except Exception as e:  # the store is another component: report, do not crash the page
            raise HTTPException(503, f"history store failed: {type(e).__name__}: {e}") from e
        return daily_report(site, day, rows, alerts, response, now=now)

    @router.get("/report/daily")
    async def report(who: Reader, date: DateParam = None) -> Response:
        return Response(_encoder.encode(await build(date)), media_type="application/json")

    @router.get("/report/daily.csv")
    async def report_csv_file(who: Reader, date: DateParam = None) -> Response:
        r = await build(date)
        name = f"crowdflow-report-{_safe(r.site)}-{r.date}.csv"
        # The BOM tells Excel the file is UTF-8; without it Chinese names show as mojibake.
        body = ("\ufeff" + report_csv(r)).encode("utf-8")
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router


def _parse_day(text: str | None, site: Site, now: float) -> dt.date:
    today = day_of(site, now)
    if text is None or not text.strip():
        return today
    t = text.strip()
    try:
        if not _DATE.fullmatch(t):
            raise ValueError(t)
        day = dt.date.fromisoformat(t)
    except ValueError:
        raise HTTPException(422, f"date {text!r} is not a day: {DATE_HINT}") from None
    if day > today:
        raise HTTPException(422, f"{t} is after the data's day {today.isoformat()}: no data yet; {DATE_HINT}")
    return day


def _read_day(
    history: Callable[..., Sequence[object]], zones: list[str], start: float, end: float
) -> dict[str, list[Mapping[str, Any]]]:
    """Every zone's one-minute rows for the day (in a worker thread: the store blocks)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for zone in zones:
        rows = history(zone, start, end, every_s=HISTORY_STEP_S)
        out[zone] = [r if isinstance(r, Mapping) else msgspec.to_builtins(r) for r in rows]
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "site"
