"""The browser fixtures themselves: Chromium renders the wall served by a live stack fed by the simulator."""

from __future__ import annotations

from playwright.sync_api import Browser

from tests.browser.conftest import WALL, Live, open_page, wait_for


def test_live_stack_serves_the_wall_and_moves_with_the_simulator(browser: Browser, live: Live) -> None:
    assert live.get("/api/me", live.token("lfc-bridge-d"))["person"] == "lfc-bridge-d"
    assert live.get("/api/me", live.operator_token)["role"] == "operator"
    sim = live.publish(start="19:30", duration_min=5, speed=120)
    wait_for("zone states from the simulator", lambda: live.get("/api/district")["people_now"] > 0)
    errors: list[str] = []
    page = open_page(browser, live.base + "/", WALL, errors, wall_token=live.operator_token)
    # A locator, not wait_for_function: the page's CSP (no unsafe-eval) blocks string predicates.
    page.locator("#people-now").filter(has_not_text="—").wait_for(timeout=30_000)
    sim.join(60)
    assert not sim.is_alive() and not sim.errors  # type: ignore[attr-defined]
    assert errors == []
