"""The daily report page in Chromium against a live stack fed by the simulator's gathering evening (2026-10-03,
the Pearl Ring bridge over capacity from about 19:55): it shows the surge day's figures, sorts, and its CSV link
downloads the same day's report."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser

from tests.browser.conftest import Live, open_page, wait_for

DESK = {"width": 1400, "height": 1000}
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
    page = open_page(browser, live.base + "/report", DESK, errors)
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
