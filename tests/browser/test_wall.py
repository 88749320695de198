"""The wall (/) in Chromium at 1920x1080 against a live stack while the simulator drives the gathering surge:
the Pearl Ring bridge and the Pearl Tower plaza fill from 19:40 and cross capacity about 19:55.

Every check compares the page with the service's own REST answers, polled until they agree (both move).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from playwright.sync_api import Browser, Page, Route, WebSocketRoute

from dashboard.app import STATIC_DIR
from dashboard.views import zone_view
from domain.levels import Level
from domain.values import ZoneState
from tests.browser.conftest import WALL, Live, open_page, show_with, wait_for

BRIDGE = "pearl-ring-bridge"
LONG = 90_000  # ms: a bound for failing, not a measured expectation (2 noisy cores)

PAGE_ZONE = """id => {
  const p = document.querySelector(`#map path[data-zone="${id}"]`);
  return p && {level: Number(p.dataset.level), fill: p.getAttribute("fill"),
               unhealthy: p.classList.contains("unhealthy")};
}"""

# Records every value an element's attribute or text takes, so a brief state is never missed by polling.
RECORD = """([sel, attr, key]) => {
  const el = document.querySelector(sel);
  const seen = (window.__seen = window.__seen || {});
  const list = (seen[key] = [attr ? el.getAttribute(attr) : el.textContent]);
  new MutationObserver(() => {
    const v = attr ? el.getAttribute(attr) : el.textContent;
    if (list[list.length - 1] !== v) list.push(v);
  }).observe(el, {attributes: true, childList: true, characterData: true, subtree: true});
}"""


def seen(page: Page, key: str) -> list[str]:
    out: list[str] = page.evaluate("key => window.__seen[key]", key)
    return out


def people(n: float) -> str:
    return f"{round(n):,}"


def record(page: Page, selector: str, attr: str | None, key: str) -> None:
    page.wait_for_selector(selector, state="attached", timeout=LONG)
    page.evaluate(RECORD, [selector, attr, key])


def other_grid_officer(live: Live, zone: str) -> str:
    """An officer whose duties do not include `zone`: the server must refuse their acknowledgement."""
    for p in live.roster_people:
        me = live.get("/api/me", live.token(p["id"]))
        if me["role"] == "officer" and me["zones"] is not None and zone not in me["zones"]:
            return str(p["id"])
    raise AssertionError(f"the shipped roster has no officer outside {zone}")


def open_alert(live: Live, zone: str, level: int) -> dict[str, Any] | None:
    found = [a for a in live.get(f"/api/alerts?zone={zone}") if a["level"]["severity"] >= level]
    return found[0] if found else None


def unexpected(errors: list[str]) -> list[str]:
    """Console and HTTP errors, less the ones this test provokes: a wrong token, the refused acknowledgement,
    the resolve without a reason, and the socket that cannot connect while the service restarts."""
    expected = re.compile(r"HTTP 401 .*/api/me$|HTTP 403 .*/ack$|WebSocket connection to .* failed")
    return [e for e in errors if not expected.search(e)]


def test_wall_follows_a_surge_and_operators_act_from_it(browser: Browser, live: Live) -> None:
    errors: list[str] = []
    wall = open_page(browser, live.base + "/", WALL, errors, wall_token=live.operator_token)
    second = open_page(browser, live.base + "/", WALL, errors, wall_token=live.operator_token)
    record(wall, f'#map path[data-zone="{BRIDGE}"]', "data-level", "bridge")
    record(wall, "#people-now", None, "people")
    sim = live.publish(start="19:30", duration_min=40, speed=120)

    # The bridge fills: its map colour follows the service's level up to II orange or I red.
    def bridge_agrees() -> dict[str, Any] | None:
        server = live.get(f"/api/zones/{BRIDGE}")
        shown = wall.evaluate(PAGE_ZONE, BRIDGE)
        ok = server["level"] >= 3 and shown == {"level": server["level"], "fill": server["colour"], "unhealthy": False}
        return server if ok else None

    server = wait_for("the bridge at II or I on the map, as /api/zones has it", bridge_agrees, timeout=120)
    levels = [int(v) for v in seen(wall, "bridge")]
    assert min(levels) < 3 <= server["level"], f"the bridge never showed calm before the surge: {levels}"
    assert wall.locator(f'#zone-list li[data-zone="{BRIDGE}"]').get_attribute("data-level") == str(server["level"])

    # The headline moves with the district, and the level counts are the service's zones.
    def headline_agrees() -> bool:
        d, zones = live.get("/api/district"), live.get("/api/zones")
        shown = wall.locator("#people-now").text_content()
        red = sum(1 for z in zones if z["level"] == 4 and z["occupancy"] is not None)
        chip = wall.locator('#level-counts [data-level="4"] .n').text_content()
        return shown == people(d["people_now"]) and chip == str(red)

    wait_for("the headline to match /api/district and /api/zones", headline_agrees, timeout=60)
    numbers = [v for v in seen(wall, "people") if v != "—"]
    assert len(set(numbers)) >= 2, f"people now never moved: {numbers}"
    assert wall.locator("#arrivals").text_content() != "—"
    assert "%" in (wall.locator("#arrivals-pct").text_content() or "")

    # The bridge's alert reaches the feed with its level, measures and actions. Acted on at I red, the worst, so
    # no later escalation takes its acknowledgement away while the test looks.
    alert = wait_for("an I red alert for the bridge", lambda: open_alert(live, BRIDGE, 4), timeout=60)
    row = wall.locator(f'#alert-list li[data-alert="{alert["id"]}"]')
    row.wait_for(timeout=LONG)
    assert "明珠环" in (row.locator(".alert-zone").text_content() or "")
    wait_for("the alert's level on the wall", lambda: row.get_attribute("data-level") == "4")
    assert row.locator(".measures li").count() >= 1 or row.locator(".alert-more").count() == 1

    # An officer of another grid is refused with the server's reason; the bridge's officer acknowledges.
    outsider, officer = other_grid_officer(live, BRIDGE), "lfc-bridge-d"
    record(second, f'#alert-list li[data-alert="{alert["id"]}"]', "data-state", "second")
    row.locator('button[data-action="ack"]').click()
    wall.locator("#signin").wait_for(state="visible")
    wall.fill("#signin-token", "token-nobody")
    wall.click("#signin-submit")
    msg = wall.locator("#signin-msg")
    wait_for("the wrong token refused", lambda: "refused" in (msg.text_content() or ""), timeout=30)
    assert wall.evaluate("sessionStorage.getItem('crowdflow.token')") is None
    wall.fill("#signin-token", live.token(outsider))
    wall.click("#signin-submit")
    wall.locator("#whoami.signed-in").wait_for()
    refusal = row.locator(".alert-error")
    wait_for("the refusal on the alert", lambda: "not on duty" in (refusal.text_content() or ""), timeout=30)
    assert live.get(f"/api/alerts/{alert['id']}")["state"] != "acknowledged"

    wall.click("#signout")
    row.locator('input[data-field="comment"]').fill("bridge ramps closed, stewards on the deck")
    row.locator('button[data-action="ack"]').click()
    wall.locator("#signin").wait_for(state="visible")
    wall.fill("#signin-token", live.token(officer))
    wall.click("#signin-submit")  # the acknowledgement waiting for the sign-in goes out now
    # The manager re-raises an acknowledged alert still open 10 min later (5 s here): read the history, and
    # the second wall's recorded states, rather than hoping to look at the right moment.
    acked = wait_for(
        "the acknowledgement in the alert's history at the server",
        lambda: [h for h in live.get(f"/api/alerts/{alert['id']}")["history"] if h["action"] == "acknowledged"],
        timeout=30,
    )
    assert acked[0]["by"] == officer and acked[0]["note"] == "bridge ramps closed, stewards on the deck"
    assert wall.evaluate("sessionStorage.getItem('crowdflow.token')") == live.token(officer)
    # Both walls stream from the push process (its own port, the page's host name), not the main port's /ws.
    for page in (wall, second):
        assert page.evaluate("CF.wall.stream.ws && CF.wall.stream.ws.url").startswith(
            f"ws://127.0.0.1:{live.push_port}/ws"
        )
    relay = live.service.health()["relay"]
    assert relay["state"] == "up" and relay["clients"] >= 2, relay
    wait_for("the acknowledgement on the second wall", lambda: "acknowledged" in seen(second, "second"), timeout=60)
    assert (wall.locator("#whoami").text_content() or "").endswith("officer")

    # The service is killed (SIGKILL: no clean shutdown) and started again: the wall says so, reconnects by
    # itself and shows the restarted service's state, the alert resumed from the journal.
    sim.join(120)
    assert not sim.is_alive() and not sim.errors  # type: ignore[attr-defined]
    record(wall, "#conn", "data-state", "conn")
    epoch = wall.evaluate("CF.wall.S.epoch")
    live.restart(hard=True)
    more = live.publish(start="20:10", duration_min=5, speed=120)  # data flows again after the restart
    wall.locator('#conn[data-state="live"]').wait_for(timeout=LONG)
    wait_for(
        "the wall to go live again after reconnecting",
        lambda: seen(wall, "conn")[-1] == "live" and "reconnecting" in seen(wall, "conn"),
        timeout=60,
    )

    def alert_agrees() -> bool:  # the manager may have moved it on since (re-raised, escalated): follow it
        state: str = live.get(f"/api/alerts/{alert['id']}")["state"]
        return wall.locator(f'#alert-list li[data-alert="{alert["id"]}"]').get_attribute("data-state") == state

    wait_for("the alert's state after the restart, as the service has it", alert_agrees, timeout=60)

    # A note, then closing it: a reason is required before anything is sent.
    row.locator('input[data-field="comment"]').fill("stewards report the deck clearing")
    row.locator('button[data-action="comment"]').click()
    try:
        wait_for(
            "the note in the alert's history",
            lambda: any(
                h["note"] == "stewards report the deck clearing"
                for h in live.get(f"/api/alerts/{alert['id']}")["history"]
            ),
            timeout=30,
        )
    except AssertionError as e:  # what the row shows says which side it failed on
        said = row.locator(".alert-error").text_content()
        box = row.locator('input[data-field="comment"]').input_value()
        raise AssertionError(f"{e}; the row says {said!r}, its box holds {box!r}, errors {errors}") from e
    row.locator('button[data-action="resolve"]').click()
    assert "reason" in (row.locator(".alert-error").text_content() or "")
    assert live.get(f"/api/alerts/{alert['id']}")["state"] != "resolved"
    row.locator('input[data-field="comment"]').fill("deck clear, ramps reopened")
    row.locator('button[data-action="resolve"]').click()
    closed = wait_for(
        "the alert resolved at the service",
        lambda: (a := live.get(f"/api/alerts/{alert['id']}"))["state"] == "resolved" and a,
        timeout=30,
    )
    assert closed["resolved_by"] == officer and closed["resolve_comment"] == "deck clear, ramps reopened"
    wait_for(
        "the wall to show it resolved (or past its last row)",
        lambda: row.count() == 0 or row.get_attribute("data-state") == "resolved",
        timeout=30,
    )
    assert wall.evaluate("CF.wall.S.epoch") not in (None, epoch), "no fresh snapshot from the restarted service"
    more.join(120)
    assert unexpected(errors) == []


def test_zone_detail_from_the_map_and_a_screenshot_that_fits(browser: Browser, live: Live, tmp_path: Path) -> None:
    errors: list[str] = []
    sim = live.publish(start="19:40", duration_min=20, speed=120)
    wait_for("the bridge above II", lambda: live.get(f"/api/zones/{BRIDGE}")["level"] >= 3, timeout=120)
    sim.join(120)
    wall = open_page(browser, live.base + "/", WALL, errors, wall_token=live.operator_token)
    wall.locator('#conn[data-state="live"], #conn[data-state="stale"]').wait_for(timeout=LONG)
    level = live.get(f"/api/zones/{BRIDGE}")["level"]
    wall.locator(f'#map path[data-zone="{BRIDGE}"][data-level="{level}"]').wait_for()

    # Everything on one 1920x1080 screen: nothing scrolls, every panel is inside the viewport.
    size = wall.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert size == [1920, 1080]
    for sel in ["#map", "#strip", "#alert-list", "#health", "#people-now", "#level-counts", "#zone-list"]:
        box = wall.locator(sel).bounding_box()
        assert box and box["width"] > 50 and box["x"] + box["width"] <= 1920 and box["y"] + box["height"] <= 1080, sel
    segments = wall.locator("#strip [data-zone]")
    assert segments.count() == 10 and segments.locator(".eta").count() == 10
    wall.screenshot(path=str(tmp_path / "wall.png"))

    # The detail: figures as the service has them, the two charts fed from the history, closed with Esc.
    wall.click(f'#map path[data-zone="{BRIDGE}"]')
    detail = wall.locator(f'#zone-detail[data-zone="{BRIDGE}"]')
    detail.wait_for(state="visible")
    server = live.get(f"/api/zones/{BRIDGE}")
    assert (detail.locator("#zd-occ").text_content() or "").startswith(people(server["occupancy"]))
    assert "明珠环" in (detail.locator("#zd-name").text_content() or "")
    for chart in ("occupancy", "inflow"):
        detail.locator(f'[data-chart="{chart}"] canvas').first.wait_for()
    wait_for("history points in the detail", lambda: "points" in (detail.locator("#zd-history").text_content() or ""))
    wall.screenshot(path=str(tmp_path / "wall-detail.png"))
    wall.keyboard.press("Escape")
    wall.locator("#zone-detail").wait_for(state="hidden")
    assert wall.locator("#zone-detail").get_attribute("data-zone") is None
    print(f"screenshots: {tmp_path / 'wall.png'} {tmp_path / 'wall-detail.png'}")
    assert errors == []


def test_the_wall_says_data_stale_when_the_stream_stops(browser: Browser, live: Live) -> None:
    """The page's socket runs through Playwright, which stops passing the service's messages on: the stream
    stalls with the connection open. The page's clock is Playwright's too: 20 s pass without waiting for them."""
    context = browser.new_context(viewport={"width": WALL["width"], "height": WALL["height"]})
    show_with(context, live.operator_token)
    context.clock.install()
    wall = context.new_page()
    passing = [True]

    def stall_when_told(ws: WebSocketRoute) -> None:
        service = ws.connect_to_server()
        service.on_message(lambda m: ws.send(m) if passing[0] else None)

    wall.route_web_socket(re.compile(r"/ws"), stall_when_told)
    sim = live.publish(start="19:30", duration_min=3, speed=120)
    wait_for("zone states from the simulator", lambda: live.get("/api/district")["people_now"] > 0)
    wall.goto(live.base + "/")
    wall.locator('#conn[data-state="live"]').wait_for(timeout=LONG)
    assert wall.locator("#banner").is_hidden()
    wall.locator("#people-now").filter(has_not_text="—").wait_for()  # the snapshot is drawn
    clock = wall.locator("#clock").text_content() or ""
    assert re.fullmatch(r"\d\d:\d\d:\d\d", clock) and "19:30:00" <= clock <= "19:33:00", clock  # data time
    passing[0] = False
    context.clock.fast_forward(20_000)  # no delta for 20 s of the page's time
    wall.locator('#conn[data-state="stale"]').wait_for()
    assert wall.locator("#banner").is_visible()
    assert "DATA STALE" in (wall.locator("#banner-title").text_content() or "")
    assert "no update from the service for" in (wall.locator("#banner-detail").text_content() or "")
    sim.join(60)
    context.close()


def test_unhealthy_sensors_grey_the_zone_and_show_in_the_health_panel(browser: Browser, live: Live) -> None:
    """The faults evening: a counter drops out 17:30-17:50, its zone goes blind, then recovers."""
    errors: list[str] = []
    wall = open_page(browser, live.base + "/", WALL, errors, wall_token=live.operator_token)
    sim = live.publish(scenario="faults", start="17:20", duration_min=40, speed=120)

    def blind() -> dict[str, Any] | None:
        found = [z for z in live.get("/api/zones") if z["healthy"] is False and z["occupancy"] is not None
                 and z["sensor_issues"]]  # fmt: skip
        return found[0] if found else None

    zone = wait_for("a zone whose sensors the service finds unhealthy", blind, timeout=120)
    zid, sensor = zone["id"], next(iter(zone["sensor_issues"]))
    path = wall.locator(f'#map path[data-zone="{zid}"]')
    wait_for(
        "the zone grey and marked on the map",
        lambda: "unhealthy" in (path.get_attribute("class") or "") and path.get_attribute("fill") == "#757575",
    )
    assert wall.locator(f'#map .zone:has(path[data-zone="{zid}"]) .unhealthy-mark.on').count() == 1
    row = wall.locator(f'#health li[data-zone="{zid}"]')
    row.wait_for()
    assert sensor in (row.text_content() or "")
    assert "unhealthy" in (wall.locator("#health-count").text_content() or "")

    sim.join(120)
    assert not sim.is_alive() and not sim.errors  # type: ignore[attr-defined]
    wait_for("the zone healthy again at the service", lambda: live.get(f"/api/zones/{zid}")["healthy"], timeout=60)
    row.wait_for(state="detached", timeout=LONG)
    assert "unhealthy" not in (path.get_attribute("class") or "")
    assert path.get_attribute("fill") == live.get(f"/api/zones/{zid}")["colour"]
    assert errors == []


# ---- the page's stream logic against a scripted server: batching, gaps, resume, data time stuck ----------

HOST = "http://wall.test"
CSP = "default-src 'self'; connect-src 'self' ws://wall.test; img-src 'self' data:"  # as dashboard/app.py


SCRIPTED_TOKEN = "t-scripted-wall"


class Scripted:
    """The wall's files from dashboard/static, /ws answered by the test: every connection's URL and what the
    page sent are kept, and the test sends snapshots and deltas when it chooses."""

    def __init__(self, page: Page) -> None:
        from dashboard.hub import Hub
        from domain.loader import load_site

        self.site = load_site()
        self.snapshot: dict[str, Any] = Hub(self.site).snapshot()
        self.snapshot["ts"] = T0
        self.sockets: list[WebSocketRoute] = []
        self.urls: list[str] = []
        self.received: list[Any] = []
        show_with(page, SCRIPTED_TOKEN)  # the page's first message on every socket is this token
        page.route(f"{HOST}/**", self.serve)
        page.route_web_socket(re.compile(r"/ws"), self.connect)

    def serve(self, route: Route) -> None:
        path = urlparse(route.request.url).path
        if path == "/healthz":
            route.fulfill(json={"status": "ok", "reasons": [], "broker": "connected", "rejected": {}})
        elif path == "/api/stream":
            route.fulfill(json={"url": "/ws", "port": None})  # as a service without a push process says
        elif path.startswith("/api/"):
            route.fulfill(status=503, json={"detail": "no alert manager"})  # the wall hides what needs one
        else:
            route.fulfill(
                path=STATIC_DIR / (path.lstrip("/") or "index.html"), headers={"Content-Security-Policy": CSP}
            )

    def connect(self, ws: WebSocketRoute) -> None:
        self.urls.append(ws.url)
        self.sockets.append(ws)
        ws.on_message(lambda m: self.received.append(json.loads(m)))
        ws.send(json.dumps(self.snapshot))

    def delta(self, seq: int, ts: float, zones: list[dict[str, Any]] | None = None,
              alerts: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
        msg = {"type": "delta", "seq": seq, "ts": ts, "zones": zones or [], "district": None,
               "alerts": alerts or [], "emergency": None}  # fmt: skip
        self.sockets[-1].send(json.dumps(msg))

    def zone(self, zone: str, share: float, level: int, ts: float, forecast: str = "") -> dict[str, Any]:
        z = self.site.zones[zone]
        state = ZoneState(zone=zone, ts=ts, occupancy=share * z.capacity, capacity=z.capacity, share=share,
                          density=1.0, inflow_per_min=10.0, outflow_per_min=8.0, arrivals_today=100,
                          level=Level(level), forecast=forecast)  # fmt: skip
        return zone_view(z, state)


T0 = 1_791_026_400.0  # 2026-10-03 19:20 Asia/Shanghai


def test_stream_batches_deltas_resyncs_on_a_gap_resumes_and_says_when_data_time_stops(browser: Browser) -> None:
    context = browser.new_context(
        viewport={"width": WALL["width"], "height": WALL["height"]},
        timezone_id="Europe/London",  # the site's clock must win over the browser's
    )
    context.clock.install()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    server = Scripted(page)
    page.goto(HOST + "/")
    page.locator('#conn[data-state="live"]').wait_for()
    assert server.urls == ["ws://wall.test/ws"], "a first connection asks for a snapshot, not a resume"
    # The data's time in Shanghai, not the browser's (drawn by the render after the snapshot: "live" may come first).
    wait_for("the data clock", lambda: page.locator("#clock").text_content() == "19:20:00", timeout=30)

    # 300 deltas in a burst while the page's time stands still: all applied, none drawn; then one second of the
    # page's time draws them in a handful of renders, the last state on the map.
    now = page.evaluate("Date.now()")
    context.clock.pause_at((now + 1000) / 1000)  # Python takes seconds here
    renders = page.evaluate("CF.wall.stats.renders")
    for seq in range(1, 301):
        server.delta(seq, T0 + seq, [server.zone(BRIDGE, 0.3 + seq / 300 * 0.7, 4 if seq == 300 else 1, T0 + seq)])
    wait_for("the burst applied", lambda: page.evaluate("CF.wall.S.seq") == 300, timeout=30)
    assert page.evaluate("CF.wall.stats.renders") == renders
    context.clock.run_for(1000)
    drawn = page.evaluate("CF.wall.stats.renders") - renders
    assert 1 <= drawn <= 5, f"{drawn} renders for 300 deltas in one second"
    red = Level.I.colour
    assert page.evaluate(PAGE_ZONE, BRIDGE) == {"level": 4, "fill": red, "unhealthy": False}
    context.clock.resume()  # the mocked socket delivers through the page's timers too: let them run

    # A gap: the page asks for a snapshot and applies nothing until it comes.
    server.delta(302, T0 + 302)
    # (page.evaluate lets Playwright's sync API deliver the socket's events to this thread)
    wait_for("a resync request", lambda: page.evaluate("1") and {"type": "resync"} in server.received, timeout=30)
    server.delta(303, T0 + 303, [server.zone(BRIDGE, 0.1, 0, T0 + 303)])
    context.clock.run_for(500)
    assert page.evaluate("CF.wall.S.seq") == 300 and page.evaluate(PAGE_ZONE, BRIDGE)["fill"] == red
    server.snapshot.update(seq=303, ts=T0 + 303)
    server.sockets[-1].send(json.dumps(server.snapshot))
    context.clock.run_for(500)
    assert page.evaluate("CF.wall.S.seq") == 303

    # The server goes away: the page says so, then resumes where it was.
    server.sockets[-1].close()
    page.locator('#conn[data-state="reconnecting"]').wait_for()
    context.clock.run_for(2000)  # the first backoff is under a second
    wait_for("a second connection", lambda: page.evaluate("1") and len(server.urls) == 2, timeout=30)
    epoch = server.snapshot["epoch"]
    assert server.urls[1] == f"ws://wall.test/ws?epoch={epoch}&seq=303"
    context.clock.run_for(500)
    page.locator('#conn[data-state="live"]').wait_for()

    # Deltas keep coming but the data time does not move: stale after a minute, and the banner says why.
    for i in range(7):
        server.delta(304 + i, T0 + 303)
        wait_for("the delta applied", lambda i=i: page.evaluate("CF.wall.S.seq") == 304 + i, timeout=30)
        context.clock.run_for(10_000)
    page.locator('#conn[data-state="stale"]').wait_for()
    assert "data time stuck at 19:25:03" in (page.locator("#banner-detail").text_content() or "")
    server.delta(311, T0 + 400)
    context.clock.run_for(1500)
    page.locator('#conn[data-state="live"]').wait_for()
    assert page.locator("#banner").is_hidden()

    # Forty open alerts: the feed shows the sixteen most severe and counts the rest.
    alerts = [
        {"id": f"a{i}", "zone": BRIDGE, "level": 1 + i % 4, "state": "raised", "cause": "capacity",
         "opened_ts": T0 + i, "updated_ts": T0 + i, "message": f"alert {i}"}
        for i in range(40)
    ]  # fmt: skip
    server.delta(312, T0 + 401, alerts=alerts)
    context.clock.run_for(1000)
    rows = page.locator("#alert-list li[data-alert]")
    assert rows.count() == 16 and "+24" in (page.locator("#alert-list .more").text_content() or "")
    assert rows.first.get_attribute("data-alert") == "a39" and rows.first.get_attribute("data-level") == "4"

    # The riverside strip: the segment's bar in its level and the forecast shortened to the next levels.
    seg = server.site.riverside()[0].id
    forecast = "reaches II orange in about 12 min and I red in about 25 min"
    server.delta(313, T0 + 402, [server.zone(seg, 0.72, 2, T0 + 402, forecast)])
    context.clock.run_for(1000)
    bar = page.locator(f'#strip [data-zone="{seg}"]')
    assert bar.get_attribute("data-level") == "2" and bar.locator(".seg-pct").text_content() == "72%"
    assert bar.locator(".eta").text_content() == "→ II in 12 min · I in 25 min"
    assert bar.locator(".eta").get_attribute("title") == forecast
    assert errors == []
    context.close()


def test_a_wall_without_a_token_asks_for_one_and_shows_what_that_token_may_see(browser: Browser, live: Live) -> None:
    """No token, no stream: the wall asks for one. An officer's token shows the officer's zones only (the
    service cuts the stream); signing out leaves the wall dark again; a wrong token is refused with the
    service's reason; the operator's shows every zone."""
    officer = "lfc-bridge-d"
    own = set(live.get("/api/me", live.token(officer))["zones"])
    sim = live.publish(start="19:30", duration_min=5, speed=120)
    wait_for("zone states from the simulator", lambda: live.get("/api/district")["people_now"] > 0)
    errors: list[str] = []
    wall = open_page(browser, live.base + "/", WALL, errors)
    wall.locator("#signin").wait_for(state="visible")
    assert "Sign in to show the wall" in (wall.locator("#signin-msg").text_content() or "")
    assert wall.evaluate("CF.wall.stats.connects") == 0  # no socket without a token

    wall.fill("#signin-token", live.token(officer))
    wall.click("#signin-submit")
    wall.locator("#whoami.signed-in").wait_for()
    wall.locator('#conn[data-state="live"]').wait_for(timeout=LONG)
    shown = (
        "Object.values(CF.wall.S.zones).filter(function (z) { return z.occupancy !== null; })"
        ".map(function (z) { return z.id; })"
    )
    seen = wait_for("the officer's zones with data", lambda: wall.evaluate(shown), timeout=60)
    assert set(seen) <= own, f"zones outside {officer}'s duties reached the page: {set(seen) - own}"

    wall.click("#signout")
    wall.locator("#signin").wait_for(state="visible")
    wait_for("the stream closed", lambda: not wall.evaluate("CF.wall.stream.connected"), timeout=30)
    wall.fill("#signin-token", "token-nobody")
    wall.click("#signin-submit")
    msg = wall.locator("#signin-msg")
    wait_for("the wrong token refused", lambda: "refused" in (msg.text_content() or ""), timeout=30)

    wall.fill("#signin-token", live.operator_token)
    wall.click("#signin-submit")
    wall.locator('#conn[data-state="live"]').wait_for(timeout=LONG)
    every = wait_for("zones beyond the officer's", lambda: (z := wall.evaluate(shown)) and set(z) - own and z, 60)
    assert len(every) > len(own)
    sim.join(60)
    assert not sim.is_alive() and not sim.errors  # type: ignore[attr-defined]
    # The officer may not read the desk's response figures: the wall asked, was refused, and hid the section.
    assert [e for e in unexpected(errors) if not re.search(r"HTTP 403 .*/api/metrics/response", e)] == []


def test_a_wall_link_with_its_token_in_the_fragment_streams_and_drops_the_token_from_the_url(
    browser: Browser, live: Live
) -> None:
    """`crowdflow demo` prints the wall as http://…/#wall=<token>: the page keeps the token in its session (the
    fragment never reaches the server) and removes it from the address bar and history entry."""
    errors: list[str] = []
    wall = open_page(browser, f"{live.base}/#wall={live.operator_token}", WALL, errors)
    wait_for("the stream open with the fragment's token", lambda: wall.evaluate("CF.wall.stream.connected"), 60)
    wait_for("the snapshot", lambda: wall.evaluate("CF.wall.S.site !== null"), 60)
    assert urlparse(wall.url).fragment == "", "the token stayed in the URL"
    assert wall.evaluate("sessionStorage.getItem('crowdflow.wall')") == live.operator_token
    assert wall.locator("#signin").is_hidden()
    assert unexpected(errors) == []


class ScriptedRelay(Scripted):
    """The same, with /api/stream saying where the push stream is (a port, a path or a URL), as a service does."""

    def __init__(self, page: Page, where: dict[str, Any]) -> None:
        self.where = where
        super().__init__(page)

    def serve(self, route: Route) -> None:
        if urlparse(route.request.url).path == "/api/stream":
            route.fulfill(json=self.where)
            return
        super().serve(route)


def test_the_wall_streams_from_where_the_service_says(browser: Browser) -> None:
    errors: list[str] = []
    for where, expected in (
        ({"url": None, "port": 8101}, "ws://wall.test:8101/ws"),  # the push process on the page's host name
        ({"url": "/push/ws", "port": None}, "ws://wall.test/push/ws"),  # behind a reverse proxy
        ({"url": "wss://push.wall.test/ws", "port": None}, "wss://push.wall.test/ws"),
    ):
        context = browser.new_context(viewport={"width": WALL["width"], "height": WALL["height"]})
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        server = ScriptedRelay(page, where)
        page.goto(HOST + "/")
        page.locator('#conn[data-state="live"]').wait_for()
        assert server.urls == [expected], where
        # A reconnect after a drop goes to the same place, resuming.
        server.sockets[-1].close()
        # (page.evaluate lets Playwright's sync API deliver the socket's events to this thread)
        wait_for("the reconnect", lambda: page.evaluate("1") and len(server.urls) == 2, timeout=15)  # noqa: B023
        assert server.urls[1].startswith(expected + "?epoch="), server.urls
        assert not errors, errors
        context.close()
