"""The officer page on a phone (390x844) against a live stack, while the simulator drives a surge.

The gathering scenario fills the Oriental Pearl Tower plaza and the Pearl Ring bridge from 19:40. The Pearl Ring
bridge post (lfc-bridge-d, Finance City grid) sees the bridge's alert arrive on their page, acknowledges it with a
comment, and the server records the acknowledgement as theirs. The riverside tip patrol (rsb-tip-d, Riverside
belt grid), signed in on another phone, never receives it: not on the page, and not from the API either.

Web Push on this machine: the page can subscribe only through a browser vendor's push service, which is not
reachable here; the page says so plainly and names the channels that still reach the officer.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from playwright.sync_api import Browser, BrowserContext, Page, Route, ViewportSize, WebSocketRoute

from alerts.encode import alert_json
from dashboard.app import STATIC_DIR, create_app
from dashboard.auth import Principal, token_table
from dashboard.hub import Hub
from dashboard.push_api import PushRegistry, b64url
from dashboard.views import zone_view
from domain.levels import Level
from domain.loader import load_site
from domain.values import Alert, ZoneState
from tests.browser.conftest import PHONE, Live, open_page, wait_for
from tests.servers import free_port

BRIDGE = "lfc-bridge-d"  # 明珠环天桥岗 Pearl Ring bridge post: duty zone pearl-ring-bridge (Finance City grid)
TIP = "rsb-tip-d"  # 滨江嘴尖段巡逻 riverside patrol S04-S06 (Riverside belt grid)
ZONE = "pearl-ring-bridge"
SCREENSHOT = Path("/tmp/officer-phone.png")
PHONE_SIZE: ViewportSize = {"width": PHONE["width"], "height": PHONE["height"]}
COMMENT = "已到天桥,封闭梯道 on the bridge, ramps closed"


def sign_in(page: Page, token: str) -> None:
    page.fill("#signin-token", token)
    page.click("#signin-submit")
    page.wait_for_selector("#whoami[data-person]", timeout=15_000)


def fetched(page: Page) -> int:
    return int(page.get_attribute("#my-alerts", "data-fetched") or 0)


def expected_errors(errors: list[str], base: str) -> list[str]:
    """Console and HTTP errors, less the one the page expects: no push key on a stack without VAPID."""
    return [e for e in errors if e != f"HTTP 404 {base}/api/push/key"]


def test_an_alert_reaches_its_officer_who_acknowledges_and_another_grid_never_sees_it(
    browser: Browser, live: Live
) -> None:
    people = {p["id"]: p for p in live.roster_people}
    mine_errors: list[str] = []
    other_errors: list[str] = []
    phone = open_page(browser, live.base + "/officer", PHONE, mine_errors)
    sign_in(phone, live.token(BRIDGE))
    assert phone.text_content("#whoami").startswith(people[BRIDGE]["name"])  # type: ignore[union-attr]
    assert phone.get_attribute(f'#my-zones li[data-zone="{ZONE}"]', "data-level") is not None
    assert phone.locator("#my-zones li[data-zone]").count() == 1  # the post's one zone
    other = open_page(browser, live.base + "/officer", PHONE, other_errors)
    sign_in(other, live.token(TIP))
    other.wait_for_selector("#my-zones li[data-zone]", timeout=15_000)  # drawn after sign-in, from the snapshot
    assert sorted(other.eval_on_selector_all("#my-zones li[data-zone]", "els => els.map(e => e.dataset.zone)")) == [
        "riverside-s04", "riverside-s05", "riverside-s06"
    ]  # fmt: skip
    # The stream is up but the service has had no sensor data yet: stale, saying so, until the data flows.
    phone.wait_for_selector('#conn[data-state="stale"][title="no sensor data yet"]', timeout=15_000)

    sim = live.publish(scenario="gathering", start="19:36", duration_min=24, speed=120)
    phone.wait_for_selector('#conn[data-state="live"]', timeout=60_000)
    alert_id: str = wait_for(
        "the bridge alert on the officer's phone",
        lambda: phone.get_attribute(f'#my-alerts li[data-zone="{ZONE}"]', "data-alert"),
        timeout=120,
    )
    card = phone.locator(f'#my-alerts li[data-alert="{alert_id}"]')
    server = live.get(f"/api/alerts/{alert_id}")
    assert server["zone"] == ZONE and server["open"]
    assert card.get_attribute("data-state") in ("raised", "escalated")
    assert card.get_attribute("data-level") in ("1", "2", "3", "4")
    assert card.locator(".checklist li").count() >= 1  # the measures checklist came with it
    assert phone.get_attribute("body", "data-alerted") is not None  # vibrated and flashed for it
    wait_for("the bridge's level on the officer's zone list",
             lambda: int(phone.get_attribute(f'#my-zones li[data-zone="{ZONE}"]', "data-level") or 0) > 0)

    phone.evaluate("window.scrollTo(0, 0)")
    phone.screenshot(path=str(SCREENSHOT.with_name("officer-phone-alert.png")))
    card.locator('textarea[data-field="comment"]').fill(COMMENT)
    card.locator('button[data-action="ack"]').click()
    phone.wait_for_selector(f'#my-alerts li[data-alert="{alert_id}"][data-state="acknowledged"]', timeout=15_000)
    acked = live.get(f"/api/alerts/{alert_id}")
    assert (acked["state"], acked["acknowledged_by"], acked["ack_comment"]) == ("acknowledged", BRIDGE, COMMENT)
    assert card.locator('button[data-action="ack"]').is_hidden()

    # The other grid's officer: reload so the page fetches its list now that the alert exists, and look.
    other.reload()
    before = 0
    wait_for("the other officer's list fetched", lambda: fetched(other) > before)
    assert other.locator(f'#my-alerts li[data-alert="{alert_id}"]').count() == 0
    assert alert_id not in {a["id"] for a in live.get("/api/alerts?mine=true", live.token(TIP))}
    assert alert_id in {a["id"] for a in live.get("/api/alerts")}  # the wall's list has it: it exists

    phone.evaluate("window.scrollTo(0, 0)")
    phone.screenshot(path=str(SCREENSHOT))
    phone.screenshot(path=str(SCREENSHOT.with_name("officer-phone-full.png")), full_page=True)
    sim.join(120)
    assert not sim.is_alive() and not sim.errors  # type: ignore[attr-defined]
    assert expected_errors(mine_errors, live.base) == []
    assert expected_errors(other_errors, live.base) == []
    assert phone.get_attribute("#push-status", "data-state") == "unconfigured"
    assert "ntfy" in (phone.text_content("#push-status") or "")


# ---- Web Push on a stack with a VAPID key ------------------------------------------------------------------


@pytest.fixture
def push_app() -> Iterator[dict[str, Any]]:
    """The dashboard alone (no pipeline) with Web Push configured, served by uvicorn on a free port."""
    site = load_site()
    saved: list[dict[str, Any]] = []
    vapid = ec.generate_private_key(ec.SECP256R1())  # a real key: the browser checks it before subscribing
    public = vapid.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    registry = PushRegistry(b64url(public), save=saved.append, now=lambda: 0.0)
    officer = Principal(person=BRIDGE, name="明珠环天桥岗", role="officer", zones=frozenset({ZONE}))
    app = create_app(Hub(site), authenticate=token_table({"token-bridge": officer}), push=registry)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="push-app", daemon=True)
    thread.start()
    wait_for("the push app to start", lambda: server.started, timeout=20)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "registry": registry}
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(
    ("permission", "state", "words"),
    [
        ("granted", "failed", "This browser could not subscribe to push"),
        ("denied", "denied", "Notifications are blocked for this site"),
    ],
)
def test_push_subscribe_says_plainly_when_the_browser_cannot(
    browser: Browser, push_app: dict[str, Any], permission: str, state: str, words: str
) -> None:
    context = browser.new_context(viewport=PHONE_SIZE, locale="zh-CN")
    if permission == "granted":
        context.grant_permissions(["notifications"], origin=push_app["base"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(push_app["base"] + "/officer")
    sign_in(page, "token-bridge")
    page.wait_for_selector('#push-status[data-state="off"]', timeout=15_000)
    assert page.is_enabled("#push-subscribe")
    if permission == "denied":
        page.evaluate("Object.defineProperty(Notification, 'permission', {get: () => 'denied'});"
                      "Notification.requestPermission = () => Promise.resolve('denied');")  # fmt: skip
    page.click("#push-subscribe")
    page.wait_for_selector(f'#push-status[data-state="{state}"]', timeout=40_000)
    text = page.text_content("#push-status") or ""
    assert words in text and "ntfy, DingTalk, WeCom" in text, text
    assert len(push_app["registry"].subscriptions) == 0  # nothing half-stored
    assert page.is_enabled("#push-subscribe")  # the officer may try again later
    assert errors == []
    context.close()


SW_HARNESS = """([src, origin, payload, clients]) => {
  // sw.js run with a stand-in for its global scope: the handlers it registers are called as Chromium would.
  const handlers = {}, shown = [], opened = [], waits = [];
  const scope = {
    addEventListener: (type, fn) => { handlers[type] = fn; },
    skipWaiting: () => Promise.resolve(),
    location: { origin },
    registration: {
      showNotification: (title, options) => { shown.push({ title, ...options }); return Promise.resolve(); },
    },
    clients: {
      claim: () => Promise.resolve(),
      matchAll: () => Promise.resolve(clients.map(url => ({
        url, focus() { opened.push("focus " + this.url); return Promise.resolve(this); },
        navigate(to) { opened.push("navigate " + to); return Promise.resolve(this); } }))),
      openWindow: url => { opened.push("open " + url); return Promise.resolve(null); },
    },
  };
  new Function("self", src)(scope);
  const event = (extra) => ({ waitUntil: p => waits.push(p), ...extra });
  handlers.push(event({ data: { json: () => payload, text: () => JSON.stringify(payload) } }));
  return Promise.all(waits).then(() => {
    const n = shown[0];
    handlers.notificationclick(event({ notification: { data: n.data, close: () => opened.push("close") } }));
    return Promise.all(waits).then(() => ({ shown, opened, types: Object.keys(handlers).sort() }));
  });
}"""


def test_service_worker_shows_the_push_and_opens_the_officer_page_on_the_alert(browser: Browser) -> None:
    """sw.js's own logic in Chromium's JS engine: a push becomes a notification with the payload's title and body,
    sticky for I red, tagged by incident; a tap opens (or navigates an open officer tab to) this service's own
    /officer page on the alert, never the address the payload names. Delivering a real push through DevTools
    (ServiceWorker.deliverPushMessage) timed out in about one headless run in three, so the handlers are called
    directly on a blank page (no CSP there, so the worker's source can be loaded as a function)."""
    src = (STATIC_DIR / "sw.js").read_text(encoding="utf-8")
    origin = "http://127.0.0.1:8000"
    payload = {  # as alerts/notify/render.push_payload writes it
        "id": "n1", "key": "incident-7", "kind": "raised", "level": 4, "colour": "#e53935",
        "zones": [ZONE], "alert_ids": ["a1b2c3"], "title": "I red · Pearl Ring bridge",
        "body": "明珠环天桥 110% of capacity: close the ramps", "url": "https://elsewhere.example/officer#alert=a1b2c3",
    }  # fmt: skip
    context = browser.new_context()
    page = context.new_page()
    page.goto("about:blank")
    fresh = page.evaluate(SW_HARNESS, [src, origin, payload, []])
    assert fresh["types"] == ["activate", "install", "notificationclick", "push"]
    (n,) = fresh["shown"]
    assert (n["title"], n["body"], n["tag"], n["requireInteraction"]) == (
        "I red · Pearl Ring bridge", "明珠环天桥 110% of capacity: close the ramps", "incident-7", True)  # fmt: skip
    assert n["data"]["url"] == origin + "/officer#alert=a1b2c3", "a tap must stay on this service"
    assert fresh["opened"] == ["close", "open " + origin + "/officer#alert=a1b2c3"]
    tab = page.evaluate(SW_HARNESS, [src, origin, {**payload, "level": 2}, [origin + "/officer"]])
    assert tab["shown"][0]["requireInteraction"] is False  # III yellow does not stay on the lock screen
    assert tab["opened"] == ["close", f"navigate {origin}/officer#alert=a1b2c3", f"focus {origin}/officer"]
    context.close()


# ---- the page's stream logic against a scripted server -----------------------------------------------------

OFFICER_HOST = "http://officer.test"
OFFICER_CSP = "default-src 'self'; connect-src 'self' ws://officer.test"  # as dashboard/app.py
T0 = 1_791_026_400.0  # 2026-10-03 19:20 Asia/Shanghai
ME = {"person": BRIDGE, "name": "明珠环天桥岗", "role": "officer", "zones": [ZONE]}


class ScriptedOfficer:
    """The officer page's files from dashboard/static; /api answered from `alerts` (alerts/encode.py's shape)
    and /ws by the test, which sends snapshots, deltas and pings when it chooses. Every request is recorded."""

    def __init__(self, page: Page) -> None:
        self.site = load_site()
        self.snapshot: dict[str, Any] = Hub(self.site).snapshot()
        self.snapshot.update(ts=T0, last_data_age_s=1.0)
        self.alerts: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.sockets: list[WebSocketRoute] = []
        self.urls: list[str] = []
        self.received: list[Any] = []
        page.route(f"{OFFICER_HOST}/**", self.serve)
        page.route_web_socket(re.compile(r"/ws"), self.connect)

    def serve(self, route: Route) -> None:
        req = route.request
        url = urlparse(req.url)
        self.requests.append((req.method, url.path + ("?" + url.query if url.query else "")))
        if url.path == "/api/stream":
            route.fulfill(json={"url": "/ws", "port": None})  # as a service without a push process says
            return
        if url.path.startswith("/api/"):
            status, body = self.api(req.method, url.path, req.headers.get("authorization"))
            route.fulfill(status=status, json=body)
            return
        name = "officer.html" if url.path == "/officer" else url.path.lstrip("/")
        route.fulfill(path=STATIC_DIR / name, headers={"Content-Security-Policy": OFFICER_CSP})

    def api(self, method: str, path: str, auth: str | None) -> tuple[int, Any]:
        if auth != "Bearer token-bridge":
            return 401, {"detail": "unknown token"}
        if path == "/api/me":
            return 200, ME
        if path == "/api/zones":
            return 200, [self.site_zone(ZONE, 0.5, 1, T0)]
        if path == "/api/alerts":
            return 200, self.alerts
        return 404, {"detail": "not here"}

    def connect(self, ws: WebSocketRoute) -> None:
        self.urls.append(ws.url)
        self.sockets.append(ws)
        ws.on_message(lambda m: self.received.append(json.loads(m)))
        ws.send(json.dumps(self.snapshot))

    def send(self, msg: dict[str, Any]) -> None:
        self.sockets[-1].send(json.dumps(msg))

    def delta(self, seq: int, ts: float, zones: list[dict[str, Any]] | None = None) -> None:
        self.send({"type": "delta", "seq": seq, "ts": ts, "zones": zones or [], "district": None, "alerts": [],
                   "emergency": None})  # fmt: skip

    def ping(self, age: float | None) -> None:
        self.send({"type": "ping", "seq": 0, "ts": T0, "last_data_age_s": age})

    def site_zone(self, zone: str, share: float, level: int, ts: float) -> dict[str, Any]:
        z = self.site.zones[zone]
        state = ZoneState(zone=zone, ts=ts, occupancy=share * z.capacity, capacity=z.capacity, share=share,
                          density=1.0, inflow_per_min=10.0, outflow_per_min=8.0, arrivals_today=100,
                          level=Level(level))  # fmt: skip
        return zone_view(z, state)


def scripted_phone(browser: Browser) -> tuple[BrowserContext, Page, ScriptedOfficer, list[str]]:
    """A phone in London time (the site's clock must win) with the page's clock under the test's control."""
    context = browser.new_context(viewport=PHONE_SIZE, locale="zh-CN", timezone_id="Europe/London")
    context.clock.install()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    server = ScriptedOfficer(page)
    return context, page, server, errors


def test_the_officer_page_opened_on_a_stopped_stream_says_stale_at_once(browser: Browser) -> None:
    """The service last got sensor data 5 minutes before the officer opened the page: #conn says stale with that
    age at once; pings keep the age current; data moving on makes it live."""
    context, page, server, errors = scripted_phone(browser)
    server.snapshot.update(last_data_age_s=300.0)
    page.goto(OFFICER_HOST + "/officer")
    sign_in(page, "token-bridge")
    conn = page.locator("#conn")
    page.locator('#conn[data-state="stale"]').filter(has_text="5 min").wait_for()
    assert conn.get_attribute("title") == "no new sensor data for 5 min · data as of 19:20:00"
    server.ping(30 * 60.0)
    page.locator('#conn[data-state="stale"]').filter(has_text="30 min").wait_for()
    server.delta(1, T0 + 1800)
    page.locator('#conn[data-state="live"]').wait_for()
    server.ping(90.0)
    page.locator('#conn[data-state="stale"]').filter(has_text="90 s").wait_for()
    assert errors == []
    context.close()


def test_alert_cards_show_when_raised_and_the_last_change_in_site_time(browser: Browser) -> None:
    """As on the wall: "raised 19:04, 16 min ago", in Shanghai time on a London phone, and the last lifecycle
    change apart, only when there was one."""
    context, page, server, errors = scripted_phone(browser)
    site = server.site
    acked = Alert(id="acked", zone=ZONE, level=Level.II, peak_level=Level.II, cause="capacity", state="acknowledged",
                  opened_at=T0 - 960, updated_at=T0 - 60, acknowledged_at=T0 - 60, acknowledged_by=BRIDGE)  # fmt: skip
    fresh = Alert(id="fresh", zone=ZONE, level=Level.III, peak_level=Level.III, cause="capacity", state="raised",
                  opened_at=T0 - 300, updated_at=T0 - 300)  # fmt: skip
    server.alerts = [alert_json(acked, site), alert_json(fresh, site)]
    page.goto(OFFICER_HOST + "/officer")
    sign_in(page, "token-bridge")
    card = page.locator('#my-alerts li[data-alert="acked"]')
    card.locator(".aage").filter(has_text="16 min ago").wait_for()
    assert card.locator(".aage").text_content() == "发布 raised 19:04, 16 min ago"
    assert card.locator(".achanged").text_content() == "变更 changed 19:19, 1 min ago"
    other = page.locator('#my-alerts li[data-alert="fresh"]')
    assert other.locator(".aage").text_content() == "发布 raised 19:15, 5 min ago"
    assert other.locator(".achanged").is_hidden()
    assert errors == []
    context.close()


def test_after_a_gap_the_officer_page_asks_for_one_snapshot_and_reconnects_if_none_comes(browser: Browser) -> None:
    """Deltas already seen are ignored; a gap sends one resync, and the deltas after it none (they are dropped
    until the snapshot); with no snapshot 10 s later the page reconnects without resuming, and the fresh
    connection's snapshot puts it back in step."""
    context, page, server, errors = scripted_phone(browser)
    server.snapshot.update(seq=5, zones=[server.site_zone(ZONE, 0.5, 1, T0)])
    page.goto(OFFICER_HOST + "/officer")
    sign_in(page, "token-bridge")
    page.locator('#conn[data-state="live"]').wait_for()
    zone = page.locator(f'#my-zones li[data-zone="{ZONE}"]')

    server.delta(5, T0)  # the snapshot's own seq, and an older one: nothing to do
    server.delta(4, T0)
    server.delta(7, T0 + 10, [server.site_zone(ZONE, 1.2, 4, T0 + 10)])  # 6 is missing
    for seq in (8, 9, 10):
        server.delta(seq, T0 + seq * 5, [server.site_zone(ZONE, 1.2, 4, T0 + seq * 5)])
    wait_for("the resync", lambda: page.evaluate("1") and {"type": "resync"} in server.received, timeout=30)
    assert zone.get_attribute("data-level") == "1", "nothing applied after the gap"

    server.snapshot.update(seq=10, ts=T0 + 50, zones=[server.site_zone(ZONE, 1.2, 4, T0 + 50)])  # the next one
    context.clock.run_for(12_000)  # no snapshot came: start over
    wait_for("a second connection", lambda: page.evaluate("1") and len(server.urls) == 2, timeout=30)
    assert server.urls == ["ws://officer.test/ws", "ws://officer.test/ws"], "the fallback does not resume"
    assert server.received.count({"type": "resync"}) == 1, server.received
    page.locator(f'#my-zones li[data-zone="{ZONE}"][data-level="4"]').wait_for()
    server.delta(11, T0 + 55, [server.site_zone(ZONE, 0.9, 3, T0 + 55)])
    page.locator(f'#my-zones li[data-zone="{ZONE}"][data-level="3"]').wait_for()
    assert server.received.count({"type": "resync"}) == 1
    assert errors == []
    context.close()


# A PushManager that subscribes without a browser vendor's push service (not reachable here): the page, its
# service worker and the service's registry are real; only the browser's push endpoint is made up.
FAKE_PUSH = """([p256dh, auth]) => {
  let current = null;
  window.__unsubscribed = 0;
  const sub = {
    endpoint: "https://push.example.test/send/phone-1",
    toJSON() { return {endpoint: this.endpoint, expirationTime: null, keys: {p256dh, auth}}; },
    unsubscribe() { window.__unsubscribed += 1; current = null; return Promise.resolve(true); },
  };
  PushManager.prototype.subscribe = function () { current = sub; return Promise.resolve(sub); };
  PushManager.prototype.getSubscription = function () { return Promise.resolve(current); };
}"""


def test_signing_out_removes_this_phones_push_subscription(browser: Browser, push_app: dict[str, Any]) -> None:
    """The officer turned push on, then signs out: the service forgets the subscription (DELETE with the id the
    POST gave, kept in localStorage with the person), the browser ends it, and #push-status says so."""
    base, registry = push_app["base"], push_app["registry"]
    browser_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    p256dh = b64url(browser_key.public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint))  # fmt: skip
    auth = b64url(b"0123456789abcdef")
    context = browser.new_context(viewport=PHONE_SIZE, locale="zh-CN")
    context.grant_permissions(["notifications"], origin=base)
    context.add_init_script(f"({FAKE_PUSH})({json.dumps([p256dh, auth])})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {urlparse(r.url).path}"))
    page.goto(base + "/officer")
    sign_in(page, "token-bridge")
    page.wait_for_selector('#push-status[data-state="off"]', timeout=15_000)
    page.click("#push-subscribe")
    page.wait_for_selector('#push-status[data-state="subscribed"]', timeout=40_000)
    assert list(registry.subscriptions) == [BRIDGE]
    kept = json.loads(page.evaluate("localStorage.getItem('crowdflow.officer.push')"))
    assert kept == {"person": BRIDGE, "id": BRIDGE}

    page.click("#signout")
    page.locator("#signin").wait_for()
    # (the status is in the signed-in part of the page, hidden now; the sign-in form says it too)
    page.locator('#push-status[data-state="off"]').filter(has_text="Signed out").wait_for(state="attached")
    assert "Signed out: push to this phone is off" in (page.text_content("#push-status") or "")
    assert "Signed out: push to this phone is off" in (page.text_content("#signin-msg") or "")
    assert f"DELETE /api/push/subscriptions/{BRIDGE}" in requests
    assert len(registry.subscriptions) == 0
    assert page.evaluate("window.__unsubscribed") == 1
    assert page.evaluate("localStorage.getItem('crowdflow.officer.push')") is None
    assert page.evaluate("sessionStorage.getItem('crowdflow.token')") is None
    assert errors == []
    context.close()
