"""The wall against a scripted server (tests.browser.test_wall.Scripted), for what a live stack cannot stage on
demand: a stream that stopped minutes before the page opened, alert ages, and sign-in races.

The page's clock is Playwright's where time matters: nothing here waits for real seconds to pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from playwright.sync_api import Browser, BrowserContext, Page, Route, WebSocketRoute

from tests.browser.conftest import WALL, wait_for
from tests.browser.test_wall import BRIDGE, HOST, SCRIPTED_TOKEN, T0, Scripted, ScriptedRelay

HOLD = "hold"  # an answer that keeps the request in flight until the test fulfils it (ScriptedApi.held)
Answer = Callable[[str, str, str | None, Any], "tuple[int, Any] | str | None"]


class ScriptedApi(Scripted):
    """Scripted, with /api/ answered by `answer(method, path, authorization, body)`: (status, json); HOLD to
    keep the request in flight (in `held`, for the test to fulfil); or None for the wall-only 503."""

    def __init__(self, page: Page, answer: Answer) -> None:
        self.answer = answer
        self.held: list[Route] = []
        super().__init__(page)

    def serve(self, route: Route) -> None:
        req = route.request
        path = urlparse(req.url).path
        if path.startswith("/api/"):
            body = json.loads(req.post_data) if req.post_data else None
            got = self.answer(req.method, path, req.headers.get("authorization"), body)
            if got == HOLD:
                self.held.append(route)
                return
            if isinstance(got, tuple):
                route.fulfill(status=got[0], json=got[1])
                return
        super().serve(route)


def wall_context(browser: Browser) -> BrowserContext:
    return browser.new_context(viewport={"width": WALL["width"], "height": WALL["height"]},
                               timezone_id="Europe/London")  # fmt: skip


def open_alert(aid: str, level: int, opened: float, updated: float | None = None,
               state: str = "raised", **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"id": aid, "zone": BRIDGE, "level": level, "state": state, "cause": "capacity", "open": True,
            "opened_ts": opened, "updated_ts": opened if updated is None else updated,
            "message": f"alert {aid}", **extra}  # fmt: skip


# ---- sign-in races -----------------------------------------------------------------------------------------


def test_a_second_action_waiting_for_sign_in_tells_the_first_to_try_again(browser: Browser) -> None:
    """Two acknowledgements in flight, both refused with 401 (the token was revoked meanwhile): only the newer
    one waits for the sign-in; the first row says to sign in and try again instead of showing "…" for good.
    After the sign-in the newer one runs."""
    context = wall_context(browser)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    posts: list[tuple[str, str | None]] = []
    people = {"Bearer old": "ana", "Bearer new": "ana"}

    def answer(method: str, path: str, auth: str | None, body: Any) -> tuple[int, Any] | str | None:
        if path == "/api/me":
            if auth in people:
                return 200, {"person": "ana", "name": "Ana", "role": "operator", "zones": None}
            return 401, {"detail": "unknown token"}
        if method == "POST" and path.startswith("/api/alerts/"):
            posts.append((path, auth))
            if auth != "Bearer new":
                return HOLD
            aid = path.split("/")[3]
            return 200, open_alert(aid, 3, T0 - 600, T0, state="acknowledged", acknowledged_by="ana")
        return None

    server = ScriptedApi(page, answer)
    server.snapshot["alerts"] = [open_alert("a1", 3, T0 - 600), open_alert("a2", 2, T0 - 300)]
    page.goto(HOST + "/")
    page.locator('#conn[data-state="live"]').wait_for()
    page.click("#signin-open")
    page.fill("#signin-token", "old")
    page.click("#signin-submit")
    page.locator("#whoami.signed-in").wait_for()

    first, second = (page.locator(f'#alert-list li[data-alert="{a}"]') for a in ("a1", "a2"))
    first.locator('button[data-action="ack"]').click()
    second.locator('button[data-action="ack"]').click()
    wait_for("both acknowledgements sent", lambda: page.evaluate("1") and len(server.held) == 2, timeout=30)
    for route in server.held:  # the token was revoked while they were on their way
        route.fulfill(status=401, json={"detail": "令牌已吊销 token revoked"})
    page.locator("#signin").wait_for()  # sign in again
    first.locator(".alert-error").filter(has_text="sign in, then try again").wait_for()
    assert second.locator(".alert-error").text_content() == "…"  # waiting for the sign-in

    page.fill("#signin-token", "new")
    page.click("#signin-submit")
    second.locator(".alert-error").filter(has_text="acknowledged").wait_for()
    assert posts == [("/api/alerts/a1/ack", "Bearer old"), ("/api/alerts/a2/ack", "Bearer old"),
                     ("/api/alerts/a2/ack", "Bearer new")]  # fmt: skip
    assert "try again" in (first.locator(".alert-error").text_content() or "")  # the first did not run by itself
    assert errors == []
    context.close()


# ---- staleness from the service's own data age -------------------------------------------------------------


def ping(server: Scripted, age: float | None) -> None:
    server.sockets[-1].send(json.dumps({"type": "ping", "seq": 0, "ts": T0, "last_data_age_s": age}))


def banner(page: Page) -> str:
    return page.locator("#banner-detail").text_content() or ""


def test_a_wall_opened_on_a_stream_that_stopped_minutes_ago_says_stale_at_once(browser: Browser) -> None:
    """The service last got sensor data 5 minutes before the page opened: the first snapshot says so, and the
    wall is stale at once with that age, not "live" for its first 15 s (nor 60). Pings keep the age current;
    data moving on makes it live; a reconnect's snapshot is believed over what the page saw before."""
    context = wall_context(browser)
    context.clock.install()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    server = Scripted(page)
    server.snapshot.update(ts=T0, last_data_age_s=300.0)
    page.goto(HOST + "/")
    page.locator('#conn[data-state="stale"]').wait_for()
    assert page.evaluate("CF.wall.stats.snapshots") == 1
    assert page.locator("#banner").is_visible()
    assert "data time stuck at 19:20:00: no new sensor data for 5 min" in banner(page), banner(page)

    # A ping (no delta for a while) carries the service's current age: the banner follows it.
    ping(server, 30 * 60.0)
    page.locator("#banner-detail").filter(has_text="no new sensor data for 30 min").wait_for()

    # Data moves on: live at once.
    server.delta(1, T0 + 1800, [server.zone(BRIDGE, 0.5, 1, T0 + 1800)])
    page.locator('#conn[data-state="live"]').wait_for()
    assert page.locator("#banner").is_hidden()

    # A ping on a live wall saying the service has had no data for 90 s: stale now, not after the page's own
    # minute has run out.
    ping(server, 90.0)
    page.locator('#conn[data-state="stale"]').wait_for()
    assert "no new sensor data for 90 s" in banner(page), banner(page)
    server.delta(2, T0 + 1900)
    page.locator('#conn[data-state="live"]').wait_for()

    # The connection drops and comes back with a snapshot: the service has had no new data for 2 minutes
    # (the page last saw data moments ago). Stale at once: neither the open socket nor the snapshot is news.
    server.snapshot.update(seq=2, ts=T0 + 1900, last_data_age_s=125.0, epoch="another-run")
    server.sockets[-1].close()
    page.locator('#conn[data-state="reconnecting"]').wait_for()
    context.clock.run_for(2000)  # the first backoff is under a second
    wait_for("a second connection", lambda: page.evaluate("1") and len(server.urls) == 2, timeout=30)
    wait_for("the second snapshot", lambda: page.evaluate("CF.wall.stats.snapshots") == 2, timeout=30)
    assert page.locator("#conn").get_attribute("data-state") == "stale"
    assert "data time stuck at 19:51:40: no new sensor data for 2 min" in banner(page), banner(page)
    assert errors == []
    context.close()


def test_a_new_service_run_without_data_is_not_shown_as_the_old_runs_data(browser: Browser) -> None:
    """A restarted service that has not received data yet (ts and age null): the wall says there is no sensor
    data, rather than keeping the previous run's time on its clock as if it were current."""
    context = wall_context(browser)
    context.clock.install()
    page = context.new_page()
    server = Scripted(page)
    server.snapshot.update(ts=T0, last_data_age_s=1.0)
    page.goto(HOST + "/")
    page.locator('#conn[data-state="live"]').wait_for()
    server.snapshot.update(seq=0, ts=None, last_data_age_s=None, epoch="restarted")
    server.sockets[-1].close()
    context.clock.run_for(2000)
    wait_for("the restarted run's snapshot", lambda: page.evaluate("CF.wall.stats.snapshots") == 2, timeout=30)
    page.locator('#conn[data-state="stale"]').wait_for()
    assert banner(page) == "no sensor data yet"
    assert page.locator("#clock").text_content() == "--:--:--"
    context.close()


# ---- alert times -------------------------------------------------------------------------------------------


def test_alert_rows_show_when_raised_and_the_last_change_in_site_time(browser: Browser) -> None:
    """Ages count from the raise (as on the officer's phone and in the report), labelled, in Shanghai time on a
    London browser, against the data's clock; the last lifecycle change is shown apart, only if there was one."""
    context = wall_context(browser)
    page = context.new_page()
    server = Scripted(page)
    server.snapshot.update(ts=T0, last_data_age_s=1.0)
    server.snapshot["alerts"] = [
        open_alert("acked", 3, T0 - 960, T0 - 60, state="acknowledged", acknowledged_by="ana"),
        open_alert("new", 2, T0 - 300),
    ]
    page.goto(HOST + "/")
    acked = page.locator('#alert-list li[data-alert="acked"]')
    acked.locator(".alert-opened").filter(has_text="raised").wait_for()
    assert acked.locator(".alert-opened").text_content() == "发布 raised 19:04, 16 min ago"
    assert acked.locator(".alert-changed").text_content() == "变更 changed 19:19, 1 min ago"
    new = page.locator('#alert-list li[data-alert="new"]')
    assert new.locator(".alert-opened").text_content() == "发布 raised 19:15, 5 min ago"
    assert new.locator(".alert-changed").count() == 0
    # Data time moves on ten minutes: the ages follow it.
    server.delta(1, T0 + 600)
    acked.locator(".alert-opened").filter(has_text="26 min ago").wait_for()
    assert acked.locator(".alert-changed").text_content() == "变更 changed 19:19, 11 min ago"
    context.close()


def _order(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all("#alert-list li[data-alert]", "els => els.map(e => e.dataset.alert)")
    return ids


TALL: dict[str, Any] = {
    "evidence": {"share": 0.93, "inflow_per_min": 420.0},
    "measures": ["close the north ramp", "stewards to the deck", "hold the metro exits"],
}


def _held_wall(browser: Browser, *, clock: bool = False) -> tuple[BrowserContext, Page, Scripted]:
    """A wall with two open alerts (red-orange "a", yellow "b"), the pointer resting on "b". "a", the top row,
    is open by default: its evidence and checklist make it tall."""
    context = wall_context(browser)
    if clock:
        context.clock.install()
    page = context.new_page()
    server = Scripted(page)
    server.snapshot.update(ts=T0, last_data_age_s=1.0)
    server.snapshot["alerts"] = [open_alert("a", 3, T0 - 600, **TALL), open_alert("b", 2, T0 - 300)]
    page.goto(HOST + "/")
    wait_for("both alerts on the wall", lambda: _order(page) == ["a", "b"], timeout=30)
    page.locator('#alert-list li[data-alert="b"] .alert-cause').hover()
    return context, page, server


def test_rows_hold_their_places_under_the_pointer_and_sort_when_it_leaves(browser: Browser) -> None:
    """A new red alert while the operator points at a row: the row does not move (a click meant for it would
    land on another alert), nor does any row above it grow or shrink; the new one is added at the end and
    counted in the head. The list sorts as soon as the pointer leaves it."""
    context, page, server = _held_wall(browser)
    b = page.locator('#alert-list li[data-alert="b"]')
    box = b.bounding_box()
    assert box is not None
    server.delta(1, T0 + 5, alerts=[open_alert("c", 4, T0 + 5, **TALL)])
    wait_for("the new alert on the wall", lambda: "c" in _order(page), timeout=30)
    assert _order(page) == ["a", "b", "c"], "rows moved under the pointer"
    now = b.bounding_box()
    assert now is not None and now["y"] == box["y"], (box, now)
    held = page.locator("#alert-held")
    assert held.is_visible() and "+1" in (held.text_content() or ""), held.text_content()
    page.mouse.move(300, 300)  # onto the map: the pointer has left the list
    wait_for("the list sorted once the pointer left", lambda: _order(page) == ["c", "a", "b"], timeout=30)
    assert not held.is_visible()
    # Typing a note holds it too, with the pointer elsewhere: the box keeps its focus and its text.
    box_b = page.locator('#alert-list li[data-alert="b"] input[data-field="comment"]')
    box_b.fill("stewards on the ramp")
    page.mouse.move(300, 300)
    server.delta(2, T0 + 10, alerts=[open_alert("d", 4, T0 + 10)])
    wait_for("the second new alert at the end", lambda: _order(page) == ["c", "a", "b", "d"], timeout=30)
    assert box_b.evaluate("e => e === document.activeElement") and box_b.input_value() == "stewards on the ramp"
    box_b.blur()
    wait_for("the list sorted once the box lost focus", lambda: _order(page)[:2] == ["d", "c"], timeout=30)
    context.close()


def test_a_pointer_resting_on_the_list_holds_it_only_for_a_while(browser: Browser) -> None:
    """Nobody keeps a new red alert at the bottom by leaving the mouse on the list: 15 s without a touch
    and it sorts anyway (the page's clock, run forward)."""
    context, page, server = _held_wall(browser, clock=True)
    server.delta(1, T0 + 5, alerts=[open_alert("c", 4, T0 + 5)])
    wait_for("the new alert at the end", lambda: _order(page) == ["a", "b", "c"], timeout=30)
    page.clock.run_for(10_000)
    assert _order(page) == ["a", "b", "c"], "released before 15 s"
    page.clock.run_for(6_000)
    wait_for("the list sorted after 15 s at rest", lambda: _order(page) == ["c", "a", "b"], timeout=30)
    context.close()


def _after(page: Page, cond: Callable[[], bool]) -> Callable[[], bool]:
    """`cond`, probed after the page's paused clock has run 50 ms (its renders are timers)."""

    def probe() -> bool:
        page.clock.run_for(50)
        return cond()

    return probe


def test_a_button_left_focused_by_a_click_does_not_hold_the_list(browser: Browser) -> None:
    """A click (or a Tab) leaves the focus on a row's button: only typing in a box holds the list after the
    pointer has left, so it sorts at once (the page's clock paused: the 15 s release cannot be what sorts it)."""
    context, page, server = _held_wall(browser, clock=True)
    page.clock.pause_at((page.evaluate("Date.now()") + 1000) / 1000)  # a number is seconds here
    page.locator('#alert-list li[data-alert="b"] button[data-action="ack"]').focus()
    assert page.evaluate("document.activeElement.dataset.action") == "ack"
    server.delta(1, T0 + 5, alerts=[open_alert("c", 4, T0 + 5)])
    wait_for("the new alert at the end", _after(page, lambda: _order(page) == ["a", "b", "c"]), timeout=20)
    page.mouse.move(300, 300)
    wait_for("the list sorted when the pointer left", _after(page, lambda: _order(page)[0] == "c"), timeout=20)
    context.close()


def test_a_note_being_typed_is_kept_when_its_row_falls_past_the_last(browser: Browser) -> None:
    """Sixteen rows, a note typed into the last, then nothing touched for 16 s (the hold is over) and two new
    red alerts push that row past the sixteenth: it stays, at the end, with its text and the cursor."""
    context = wall_context(browser)
    context.clock.install()
    page = context.new_page()
    server = Scripted(page)
    server.snapshot.update(ts=T0, last_data_age_s=1.0)
    server.snapshot["alerts"] = [open_alert(f"r{i:02d}", 2, T0 - 1000 + 10 * i) for i in range(16)]
    page.goto(HOST + "/")
    wait_for("sixteen rows", lambda: len(_order(page)) == 16, timeout=30)
    assert _order(page)[-1] == "r00"
    note = page.locator('#alert-list li[data-alert="r00"] input[data-field="comment"]')
    note.fill("ramp 3 closed, waiting for police")
    page.mouse.move(300, 300)
    page.clock.run_for(16_000)
    server.delta(1, T0 + 5, alerts=[open_alert("n1", 4, T0 + 5), open_alert("n2", 4, T0 + 6)])
    wait_for("the new alerts on top", lambda: _order(page)[:2] == ["n2", "n1"], timeout=30)
    assert _order(page)[-1] == "r00" and "r01" not in _order(page), _order(page)
    assert note.input_value() == "ramp 3 closed, waiting for police"
    assert note.evaluate("e => e === document.activeElement"), "the cursor left the box"
    assert (page.locator("#alert-list .more").text_content() or "").startswith("+1 more")
    context.close()


# ---- stream refusals and fallback --------------------------------------------------------------------------


class Closing(ScriptedRelay):
    """ScriptedRelay whose sockets answer the page's token with the close codes in `closes`, in turn (then a
    snapshot); sockets to a URL containing `dead` are closed before they open (a port nobody routes)."""

    def __init__(self, page: Page, closes: list[tuple[int, str]], where: dict[str, Any] | None = None,
                 dead: str | None = None) -> None:  # fmt: skip
        self.closes = closes
        self.dead = dead
        super().__init__(page, where or {"url": "/ws", "port": None})

    def connect(self, ws: WebSocketRoute) -> None:
        self.urls.append(ws.url)
        if self.dead is not None and self.dead in ws.url:
            ws.close(code=1006)
            return
        self.sockets.append(ws)

        def got(text: str | bytes) -> None:
            self.received.append(json.loads(text))
            if self.closes:
                code, reason = self.closes.pop(0)
                ws.close(code=code, reason=reason)
            else:
                ws.send(json.dumps(self.snapshot))

        ws.on_message(got)


def test_a_token_not_judged_now_is_kept_and_retried_only_4401_forgets_it(browser: Browser) -> None:
    """1013 Try Again Later (the address must wait, the service was busy): the wall keeps its token and streams
    once the service answers; 4401 (refused): the token is forgotten and the sign-in form says why."""
    errors: list[str] = []
    context = wall_context(browser)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    busy = "the service did not check the token in time: try again"
    server = Closing(page, [(1013, busy), (1013, "too many unknown tokens from your address: wait 5 s")])
    page.goto(HOST + "/")
    page.locator('#conn[data-state="live"]').wait_for(timeout=60_000)
    assert len(server.urls) == 3 and [m["token"] for m in server.received] == [SCRIPTED_TOKEN] * 3
    assert page.evaluate("sessionStorage.getItem('crowdflow.wall')") == SCRIPTED_TOKEN
    assert page.locator("#signin").is_hidden()
    context.close()

    context = wall_context(browser)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    server = Closing(page, [(4401, "unknown or expired token: ask the command centre")])
    page.goto(HOST + "/")
    page.locator("#signin").filter(has_text="unknown or expired token").wait_for()
    assert page.evaluate("sessionStorage.getItem('crowdflow.wall')") is None
    assert errors == []
    context.close()


def test_a_push_port_that_never_opens_falls_back_to_this_origins_ws(browser: Browser) -> None:
    """/api/stream names the push port, but nothing answers there (a proxy that does not route it): after a
    few tries the wall streams from its own origin's /ws."""
    errors: list[str] = []
    context = wall_context(browser)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    server = Closing(page, [], where={"url": None, "port": 8101}, dead=":8101")
    page.goto(HOST + "/")
    page.locator('#conn[data-state="live"]').wait_for(timeout=60_000)
    assert server.urls[:3] == ["ws://wall.test:8101/ws"] * 3 and server.urls[3] == "ws://wall.test/ws", server.urls
    assert errors == []
    context.close()


HUNG_SOCKET = """
(function () {
  // A push port held with nobody serving (the service's socket between two push processes): the connection
  // never opens, nor fails. Other URLs get the page's (Playwright-routed) WebSocket.
  var Real = window.WebSocket;
  window.CF_hung = 0;
  window.WebSocket = function (url, protocols) {
    if (String(url).indexOf(":8101/") < 0) return protocols === undefined ? new Real(url) : new Real(url, protocols);
    var ws = this;
    window.CF_hung++;
    ws.url = url; ws.readyState = 0;
    ws.send = function () { throw new Error("not open"); };
    ws.close = function () {
      if (ws.readyState === 3) return;
      ws.readyState = 3;
      setTimeout(function () { if (ws.onclose) ws.onclose({ code: 1006, reason: "" }); }, 0);
    };
  };
})();
"""


def test_a_connection_that_never_opens_is_given_up_and_counts_towards_the_fallback(browser: Browser) -> None:
    errors: list[str] = []
    context = wall_context(browser)
    context.clock.install()
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    server = Closing(page, [], where={"url": None, "port": 8101})
    page.add_init_script(HUNG_SOCKET)
    page.goto(HOST + "/")
    for _ in range(20):  # the page's time, 12 s at a time: open waits of 10 s and backoffs in between
        if page.evaluate("CF.wall.stats.snapshots") >= 1:
            break
        context.clock.run_for(12_000)
        page.evaluate("1")  # let Playwright deliver the routed socket's events
    wait_for("the wall streaming from its own origin", lambda: page.evaluate("CF.wall.stats.snapshots") >= 1, 30)
    # Three hung tries, then only this origin's /ws (more than once if the page's clock, run 12 s at a time,
    # ran past the snapshot far enough for the wall to reconnect: still never the push port again).
    urls = server.urls
    assert page.evaluate("window.CF_hung") == 3 and urls and set(urls) == {"ws://wall.test/ws"}, urls
    assert errors == []
    context.close()
