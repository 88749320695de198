"""The daily report page in Chromium against a live stack fed by the simulator's gathering evening (2026-10-03,
the Pearl Ring bridge over capacity from about 19:55): it shows the surge day's figures, sorts, and its CSV link
downloads the same day's report."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import msgspec
from playwright.sync_api import Browser, Route, ViewportSize

from alerts.encode import alert_json
from dashboard.app import STATIC_DIR
from dashboard.report import daily_report
from domain.levels import Level
from domain.loader import load_site
from domain.values import Alert
from tests.browser.conftest import Live, open_page, wait_for

DESK: ViewportSize = {"width": 1400, "height": 1000}
SURGE_DAY = "2026-10-03"
BRIDGE = "pearl-ring-bridge"


def settled_report(live: Live) -> dict[str, Any]:
    """The default report once the service has processed the whole run (two reads a second apart agree)."""
    last: list[Any] = [None]

    def probe() -> dict[str, Any] | None:
        r: dict[str, Any] = live.get("/api/report/daily")
        key = (r["data_until_ts"], r["headline"]["peak_people"], r["headline"]["alerts"])
        same, last[0] = key == last[0], key
        return r if same and r["data_until_at"][11:16] >= "19:59" else None

    result: dict[str, Any] = wait_for("the report to have the whole simulated evening", probe, every=1.0)
    return result


def test_report_page_shows_the_surge_day_and_downloads_its_csv(browser: Browser, live: Live) -> None:
    sim = live.publish(scenario="gathering", start="19:30", duration_min=30, speed=120)
    sim.join(180)
    assert not sim.is_alive() and not sim.errors  # type: ignore[attr-defined]
    r = settled_report(live)
    assert r["date"] == SURGE_DAY and r["partial"]
    bridge = next(z for z in r["zones"] if z["zone"] == BRIDGE)
    assert bridge["worst_level"] >= 1 and bridge["peak_share"] > 1.0  # the surge is in the report
    assert r["headline"]["alerts"]["total"] >= 1

    errors: list[str] = []
    # The browser runs in London time: the page must show Shanghai times as the server gives them.
    page = open_page(browser, live.base + "/report", DESK, errors, wall_token=live.operator_token)
    page.wait_for_selector("body[data-state=ready]", timeout=30_000)
    assert page.input_value("#report-date") == SURGE_DAY
    assert page.get_attribute("body", "data-date") == SURGE_DAY
    h = r["headline"]
    assert page.text_content("#peak-people") == f"{h['peak_people']:,}"
    assert (page.text_content("#peak-at") or "").startswith("于 at " + h["peak_at"][11:16])
    assert page.text_content("#alerts-total") == f"· {h['alerts']['total']}"
    for name, count in h["alerts"]["by_level"].items():
        assert page.text_content(f'#alerts-by-level [data-level="{name}"] .chip-value') == str(count)
    assert page.locator("#zones-table tbody tr[data-zone]").count() == len(r["zones"]) == 35
    row = page.locator(f'#zones-table tbody tr[data-zone="{BRIDGE}"]')
    assert row.locator(".lvl").get_attribute("data-level") == str(bridge["worst_level"])
    assert row.locator("td.peak").text_content() == f"{bridge['peak_occupancy']:,}"
    assert page.locator("#alerts-table tbody tr[data-alert]").count() == h["alerts"]["total"]

    # Sorted by peak share, the bridge or the plaza (both well over capacity) comes first.
    page.click('#zones-table th[data-key="peak_share"]')
    first = page.get_attribute("#zones-table tbody tr:first-child", "data-zone")
    top = max(r["zones"], key=lambda z: z["peak_share"] or -1.0)
    assert first == top["zone"]

    with page.expect_download() as dl:
        page.click("#csv-link")
    download = dl.value
    assert download.suggested_filename == f"crowdflow-report-lujiazui-{SURGE_DAY}.csv"
    body = download.path().read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM for Excel
    lines = body.decode("utf-8-sig").splitlines()
    markers = [line.split(",")[0] for line in lines if line.startswith("[")]
    assert markers == ["[report]", "[headline]", "[zones]", "[grids]", "[response]", "[alerts]"]
    assert any(line.startswith(f"{BRIDGE},") for line in lines)
    assert errors == []


# ---- the page against a scripted answer: alert times after midnight ----------------------------------------

REPORT_HOST = "http://report.test"


def test_alert_times_on_another_day_show_their_date(browser: Browser) -> None:
    """The report of 2026-10-03 lists an alert of 23:50 acknowledged at 00:05 and resolved at 00:40 the next
    day: those read "10-04 00:05" and "10-04 00:40", never a bare time that looks earlier than the opening."""
    site = load_site()
    tz = ZoneInfo(site.info.timezone)
    day = dt.date(2026, 10, 3)

    def at(d: int, h: int, m: int) -> float:
        return dt.datetime(2026, 10, d, h, m, tzinfo=tz).timestamp()

    late = Alert(id="late", zone=BRIDGE, level=Level.NORMAL, peak_level=Level.II, cause="capacity",
                 state="resolved", opened_at=at(3, 23, 50), updated_at=at(4, 0, 40), acknowledged_at=at(4, 0, 5),
                 acknowledged_by="ana", resolved_at=at(4, 0, 40))  # fmt: skip
    same = Alert(id="same", zone=BRIDGE, level=Level.I, peak_level=Level.I, cause="capacity", state="acknowledged",
                 opened_at=at(3, 19, 42), updated_at=at(3, 19, 44), acknowledged_at=at(3, 19, 44),
                 acknowledged_by="bo")  # fmt: skip
    report = daily_report(site, day, {}, [alert_json(a, site) for a in (late, same)], None, now=at(4, 1, 0))
    body = msgspec.json.encode(report)
    csp = "default-src 'self'"

    def serve(route: Route) -> None:
        path = urlparse(route.request.url).path
        if path == "/api/report/daily":
            route.fulfill(body=body, content_type="application/json")
        else:
            name = "report.html" if path == "/report" else path.lstrip("/")
            route.fulfill(path=STATIC_DIR / name, headers={"Content-Security-Policy": csp})

    viewport: ViewportSize = {"width": DESK["width"], "height": DESK["height"]}
    context = browser.new_context(viewport=viewport, timezone_id="Europe/London")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route(f"{REPORT_HOST}/**", serve)
    page.goto(REPORT_HOST + "/report?date=2026-10-03")
    page.locator("body[data-state=ready]").wait_for()
    cells = page.locator('#alerts-table tr[data-alert="late"] td')
    assert cells.nth(0).text_content() == "23:50"
    assert cells.nth(5).text_content() == "10-04 00:05 ana"
    assert cells.nth(6).text_content() == "10-04 00:40"
    same_cells = page.locator('#alerts-table tr[data-alert="same"] td')
    assert same_cells.nth(0).text_content() == "19:42"
    assert same_cells.nth(5).text_content() == "19:44 bo"
    assert errors == []
    context.close()
