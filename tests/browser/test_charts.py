"""dashboard/static/charts.js in Chromium: the zone charts draw, keep a bounded window, batch redraws, show the
forecast ahead, leave gaps for missing data and label times in the site's timezone whatever the browser's is.

The shipped static dir and a test page (tests/browser/pages/) are served by a small local HTTP server with the
dashboard's Content-Security-Policy, so anything the charts do that the wall's CSP would block fails here too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"/static/": REPO / "dashboard" / "static", "/pages/": Path(__file__).parent / "pages"}
# The policy dashboard/app.py sends with every page (minus the WebSocket origin, unused here).
CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
T0 = 1_767_240_000  # 2026-01-01 04:00 UTC = 12:00 Asia/Shanghai (and 23:00 the day before in New York)
LEVELS = [
    {"level": 0, "label": "normal", "colour": "#2e7d32"},
    {"level": 1, "label": "IV blue", "colour": "#1e88e5"},
    {"level": 2, "label": "III yellow", "colour": "#fdd835"},
    {"level": 3, "label": "II orange", "colour": "#fb8c00"},
    {"level": 4, "label": "I red", "colour": "#e53935"},
]
ZONE = {
    "id": "bund-s1",
    "capacity": 7000,
    "thresholds": [{"level": 1, "share": 0.6}, {"level": 2, "share": 0.7}, {"level": 3, "share": 0.8},
                   {"level": 4, "share": 0.95}],
}  # fmt: skip


class _Handler(SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        p = unquote(urlsplit(path).path)
        for prefix, root in ROOTS.items():
            if p.startswith(prefix):
                target = (root / p[len(prefix):]).resolve()
                if target.is_relative_to(root.resolve()):
                    return str(target)
        return str(REPO / "nonexistent")

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="charts-static", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture
def errors() -> list[str]:
    return []


def open_charts_page(browser: Browser, base_url: str, errors: list[str], timezone_id: str = "UTC") -> Page:
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, timezone_id=timezone_id)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    # A failed load's console line has no URL: failed responses are recorded by URL below instead.
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type in ("error", "warning")
            and not m.text.startswith("Failed to load resource") else None)  # fmt: skip
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.goto(base_url + "/pages/charts.html")
    until(page, "() => !!(window.CF && typeof window.CF.zoneCharts === 'function')")
    return page


def until(page: Page, predicate: str, arg: object = None, timeout_s: float = 15.0) -> None:
    """Poll a JS predicate through evaluate (DevTools, outside the page's CSP). Playwright's string
    wait_for_function runs inside the page, where the CSP (no unsafe-eval) throws EvalError."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {predicate}")
        page.wait_for_timeout(50)


@pytest.fixture
def page(browser: Browser, base_url: str, errors: list[str]) -> Iterator[Page]:
    p = open_charts_page(browser, base_url, errors)
    yield p
    violations = p.evaluate("window.cspViolations")
    p.context.close()
    assert violations == [], f"the dashboard's CSP blocks: {violations}"
    assert errors == []


def history(n: int, *, start: int = T0, step: int = 60, **overrides: Any) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "ts": start + i * step, "occupancy": 3000.0 + 20 * i, "share": (3000.0 + 20 * i) / 7000,
            "density": 1.0, "inflow_per_min": 40.0 + i % 7, "outflow_per_min": 35.0, "level": 0,
            "expected_inflow_per_min": 42.0, "arrivals_today": 10_000 + i,
        }  # fmt: skip
        row.update(overrides)
        rows.append(row)
    return rows


def view(ts: int, occupancy: float | None = 4000.0, outlook: list[list[float]] | None = None) -> dict[str, Any]:
    return {
        "id": ZONE["id"], "ts": ts, "occupancy": occupancy, "capacity": 7000, "inflow_per_min": 55.0,
        "expected_inflow_per_min": 44.5, "outlook": outlook or [],
    }  # fmt: skip


def make_chart(page: Page, container: str = "#flow", window_minutes: int = 180) -> None:
    """window.c: the charts in `container`, made the way the wall makes them."""
    page.evaluate(
        """([sel, zone, levels, win]) => {
            window.c = CF.zoneCharts(document.querySelector(sel),
                {zone: zone, levels: levels, windowMinutes: win, timezone: "Asia/Shanghai"});
        }""",
        [container, ZONE, LEVELS, window_minutes],
    )


def wait_drawn_to(page: Page, ts: float) -> None:
    """Until the time axis as drawn reaches `ts` (redraws are batched, so they lag the data a little)."""
    until(page, "ts => { const r = window.c.xRange(); return r !== null && r[1] >= ts; }", ts)


# Pixels of a colour drawn at full opacity: lines are drawn, not just the axes (colours from charts.js).
COUNT_COLOUR = """([sel, rgb]) => {
    const cv = document.querySelector(sel + " canvas");
    const copy = document.createElement("canvas");  // read a copy: the chart's own canvas is never read back
    copy.width = cv.width;
    copy.height = cv.height;
    const ctx = copy.getContext("2d", {willReadFrequently: true});
    ctx.drawImage(cv, 0, 0);
    const px = ctx.getImageData(0, 0, cv.width, cv.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] === 255 && Math.abs(px[i] - rgb[0]) < 8 && Math.abs(px[i + 1] - rgb[1]) < 8
            && Math.abs(px[i + 2] - rgb[2]) < 8) n++;
    }
    return n;
}"""


def test_two_panels_draw_their_lines(page: Page) -> None:
    make_chart(page)
    page.evaluate("rows => window.c.setHistory(rows)", history(120))
    wait_drawn_to(page, T0 + 119 * 60)
    assert page.locator("#flow [data-chart]").evaluate_all("els => els.map(e => e.dataset.chart)") == [
        "occupancy", "inflow",
    ]  # fmt: skip
    occ = '#flow [data-chart="occupancy"]'
    inflow = '#flow [data-chart="inflow"]'
    assert page.evaluate(COUNT_COLOUR, [occ, [255, 255, 255]]) > 200  # the occupancy line (white)
    assert page.evaluate(COUNT_COLOUR, [occ, [0xFB, 0x8C, 0x00]]) > 200  # level II line, its level's orange
    assert page.evaluate(COUNT_COLOUR, [occ, [0xE5, 0x39, 0x35]]) > 200  # level I line, red
    assert page.evaluate(COUNT_COLOUR, [inflow, [0x4F, 0xC3, 0xF7]]) > 200  # inflow
    assert page.evaluate(COUNT_COLOUR, [inflow, [0xB0, 0xBE, 0xC5]]) > 100  # the learned normal (dashed)
    assert page.evaluate("window.c.size()") == 120
    # #flow has padding but no height: each panel's plot gets the default height rather than squeezing to fit.
    heights = page.locator("#flow [data-chart] .uplot canvas").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().height)"
    )
    assert heights == [240, 240]
    # The time axis spans the history; its capacity makes the occupancy scale include 7,000.
    x0, x1 = page.evaluate("window.c.xRange()")
    assert (x0, x1) == (T0, T0 + 119 * 60)


def test_window_stays_bounded_and_bursts_make_one_redraw(page: Page) -> None:
    make_chart(page, window_minutes=30)
    page.evaluate("rows => window.c.setHistory(rows)", history(90))  # 90 min of history into a 30 min window
    assert page.evaluate("window.c.size()") == 31  # [newest - 30 min, newest], both ends kept
    wait_drawn_to(page, T0 + 89 * 60)
    before = page.evaluate("window.c.draws()")
    last = T0 + 89 * 60 + 300 * 15
    sizes = page.evaluate(
        """views => views.map(v => { window.c.push(v); return window.c.size(); })""",
        [view(T0 + 89 * 60 + k * 15) for k in range(1, 301)],  # 75 min of 15 s ticks, in one burst
    )
    assert max(sizes) <= 30 * 4 + 1
    wait_drawn_to(page, last)
    assert page.evaluate("window.c.draws()") == before + 1  # 300 pushes in one go: one redraw
    x = page.evaluate("window.c.data().occupancy[0]")
    assert x[0] >= last - 30 * 60 and x[-1] == last and len(x) == page.evaluate("window.c.size()")
    x0, _ = page.evaluate("window.c.xRange()")
    assert x0 >= last - 30 * 60  # the drawn range dropped the old points too


def test_forecast_extends_past_the_last_point_from_it(page: Page) -> None:
    make_chart(page)
    page.evaluate("rows => window.c.setHistory(rows)", history(60))
    last = T0 + 60 * 60
    outlook: list[list[float]] = [[10, 4300, 4100, 4500], [20, 4700, 4300, 5100], [30, 5200, 4600, 5800]]
    page.evaluate("v => window.c.push(v)", view(last, 4000.0, outlook))
    wait_drawn_to(page, last + 30 * 60)
    assert page.evaluate("window.c.size()") == 61  # forecast points are not kept data
    x, occ, fc, lo, hi = page.evaluate("window.c.data().occupancy")
    n = x.index(last)
    assert x[n + 1:] == [last + 600, last + 1200, last + 1800]
    assert occ[n] == 4000 and occ[n + 1:] == [None, None, None]  # no measured line into the future
    assert fc[n] == lo[n] == hi[n] == 4000  # the dashed line and its band start at the last point
    assert fc[n + 1:] == [4300, 4700, 5200] and lo[n + 1:] == [4100, 4300, 4600] and hi[n + 1:] == [4500, 5100, 5800]
    assert all(v is None for v in fc[:n])
    occ_panel = '#flow [data-chart="occupancy"]'
    assert page.evaluate(COUNT_COLOUR, [occ_panel, [0x80, 0xDE, 0xEA]]) > 50  # the dashed forecast is drawn
    # The inflow panel shares the time axis, so both read at the same x.
    assert page.evaluate("window.c.data().inflow[0]") == x
    # A later view without an outlook anchored further on moves the forecast with it.
    page.evaluate("v => window.c.push(v)", view(last + 300, 4100.0, [[10, 4400, 4200, 4600]]))
    wait_drawn_to(page, last + 300 + 600)
    x2 = page.evaluate("window.c.data().occupancy[0]")
    assert x2[-2:] == [last + 300, last + 900]


def test_missing_values_are_gaps_not_zeros(page: Page) -> None:
    make_chart(page)
    rows = history(30)
    rows[10]["occupancy"] = None
    rows[11]["occupancy"] = None
    rows[12]["inflow_per_min"] = None
    for r in rows[:20]:
        del r["expected_inflow_per_min"]  # rows stored before the learned normal existed
    page.evaluate("rows => window.c.setHistory(rows)", rows)
    page.evaluate("v => window.c.push(v)", view(T0 + 30 * 60, None))  # a live view without a count
    wait_drawn_to(page, T0 + 30 * 60)
    x, occ, *_ = page.evaluate("window.c.data().occupancy")
    _, inflow, normal = page.evaluate("window.c.data().inflow")
    assert len(x) == 31
    assert occ[10] is None and occ[11] is None and occ[9] == 3180 and occ[12] == 3240
    assert occ[30] is None
    assert inflow[12] is None and inflow[11] is not None
    assert normal[:20] == [None] * 20 and normal[20:30] == [42.0] * 10 and normal[30] == 44.5
    # What uPlot was given is what data() reports: nulls, which it draws as breaks in the line.
    assert page.evaluate("window.c.size()") == 31


def test_times_in_the_site_timezone_whatever_the_browser_is_in(browser: Browser, base_url: str,
                                                               errors: list[str]) -> None:  # fmt: skip
    page = open_charts_page(browser, base_url, errors, timezone_id="America/New_York")
    try:
        assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "America/New_York"
        make_chart(page)
        page.evaluate("rows => window.c.setHistory(rows)", history(181))  # 12:00-15:00 Shanghai
        wait_drawn_to(page, T0 + 180 * 60)
        labels = page.evaluate("window.c.xLabels()")
        hours = {int(lbl.split(":")[0]) for lbl in labels if lbl}
        assert labels and hours <= {12, 13, 14, 15}, labels  # New York would read 23:00-02:00
        assert "13:00" in labels and "14:00" in labels
    finally:
        page.context.close()
    assert errors == []


def test_fills_a_container_with_a_height_and_follows_its_resizes(page: Page) -> None:
    make_chart(page, container="#fixed")
    page.evaluate("rows => window.c.setHistory(rows)", history(60))
    wait_drawn_to(page, T0 + 59 * 60)
    box = page.locator("#fixed").bounding_box()
    assert box is not None
    for kind in ("occupancy", "inflow"):
        panel = page.locator(f'#fixed [data-chart="{kind}"]').bounding_box()
        assert panel is not None
        assert panel["width"] == pytest.approx(900, abs=1)
        assert box["y"] <= panel["y"] and panel["y"] + panel["height"] <= box["y"] + box["height"] + 1
    page.evaluate("document.querySelector('#fixed').style.width = '700px'")  # CSSOM: allowed by the CSP
    until(
        page,
        """() => [...document.querySelectorAll('#fixed [data-chart] .uplot')]
                 .every(u => Math.abs(u.getBoundingClientRect().width - 700) <= 1)""",
    )


def test_destroy_frees_the_panels_and_ignores_later_pushes(page: Page) -> None:
    make_chart(page)
    page.evaluate("rows => window.c.setHistory(rows)", history(10))
    page.evaluate("v => window.c.push(v)", view(T0 + 600))
    page.evaluate("window.c.destroy()")  # with a redraw still pending
    assert page.evaluate("document.querySelector('#flow').children.length") == 0
    page.evaluate("v => window.c.push(v)", view(T0 + 700))
    assert page.evaluate("window.c.size()") == 0
    # A pending redraw never fires on a destroyed chart (it would throw into the page: see the errors check).
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 600)))")
