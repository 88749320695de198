"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and a live crowdflow stack.

These tests run in their own pytest invocation (`make test` runs them after the rest): Playwright's sync API
keeps an event loop of its own that must not share a process with pytest-asyncio's (DESIGN.md §5).

Nothing is skipped: without /usr/bin/chromium or Mosquitto the tests fail and say what to install.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize, sync_playwright

from alerts.roster import default_roster_path, with_tokens
from tests.servers import Server, ServiceProcess, free_port, start_mosquitto

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHIPPED_ROSTER = default_roster_path()
OPERATOR_TOKEN = "token-operator"
WALL: ViewportSize = {"width": 1920, "height": 1080}
PHONE: ViewportSize = {"width": 390, "height": 844}
# As root, in a sandbox with no network: no sandboxing, no GPU, no calls home (they are refused here, slowly).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def person_token(person: str) -> str:
    return f"token-{person}"


def wait_for(what: str, probe: Any, timeout: float = 60.0, every: float = 0.25) -> Any:
    """Poll `probe()` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            last = probe()
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def roster_with_tokens(text: str) -> str:
    """The shipped roster with every person given the token "token-<id>"."""
    import tomllib

    people = [p["id"] for p in tomllib.loads(text)["people"]]
    return with_tokens(text, {person: person_token(person) for person in people})


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_session: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. Install it with "
            "`apt-get update && apt-get install -y chromium fonts-noto-cjk` (or run `make test`, which does). "
            "Never `playwright install`: its download is not reachable here."
        )
    b = playwright_session.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class Live:
    """A running stack: Mosquitto + `crowdflow serve` on the Lujiazui site with a sim clock."""

    service: ServiceProcess
    mqtt_port: int
    workdir: Path
    roster: Path
    push_port: int = 0  # the push process's (dashboard/pushserver.py): the pages' stream
    publishers: list[threading.Thread] = field(default_factory=list)
    stop_publishing: threading.Event = field(default_factory=threading.Event)

    @property
    def base(self) -> str:
        return self.service.base

    def token(self, person: str) -> str:
        return person_token(person)

    @property
    def operator_token(self) -> str:
        return OPERATOR_TOKEN

    @property
    def roster_people(self) -> list[dict[str, Any]]:
        import tomllib

        people: list[dict[str, Any]] = tomllib.loads(self.roster.read_text())["people"]
        return people

    def get(self, path: str, token: str | None = None) -> Any:
        """GET with `token`, else the operator's (every read needs a token)."""
        return self.service.get(path, token or OPERATOR_TOKEN)

    def restart(self, *, hard: bool = False) -> None:
        """Stop the service (with `hard`, SIGKILL it) and start it again on the same port and data dir (its
        walls must reconnect by themselves)."""
        self.service.restart(hard=hard)

    def publish(
        self, scenario: str = "gathering", start: str = "19:30", duration_min: float = 40.0, speed: float = 120.0
    ) -> threading.Thread:
        """Publish a simulated scenario over MQTT in a background thread (already started; join to wait)."""
        from domain.loader import load_site
        from sim.publisher import run_scenario
        from sim.scenario import load_scenario

        errors: list[BaseException] = []

        def run() -> None:
            try:
                run_scenario(
                    load_site(),
                    load_scenario(scenario),
                    host="127.0.0.1",
                    port=self.mqtt_port,
                    speed=speed,
                    out_dir=self.workdir / "truth",
                    start=start,
                    duration_s=duration_min * 60.0,
                    progress=False,
                    stop=self.stop_publishing,
                )
            except BaseException as e:  # surfaced by the test through thread.errors
                errors.append(e)

        t = threading.Thread(target=run, name=f"sim-{scenario}", daemon=True)
        t.errors = errors  # type: ignore[attr-defined]
        t.start()
        self.publishers.append(t)
        return t


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    broker: Server = start_mosquitto(tmp_path / "mosquitto")
    roster = tmp_path / "roster.toml"
    roster.write_text(roster_with_tokens(SHIPPED_ROSTER.read_text(encoding="utf-8")), encoding="utf-8")
    port, push_port = free_port(), free_port()
    cfg = tmp_path / "crowdflow.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "cf-browser"\n'
        f'[service]\nclock = "sim"\ndata_dir = "{tmp_path / "var"}"\ntick_s = 5\n'
        f'[dashboard]\nport = {port}\npush_port = {push_port}\napi_token = "{OPERATOR_TOKEN}"\n'
        f'[alerts]\nroster = "{roster}"\ndeliver = false\n',
        encoding="utf-8",
    )
    stack = Live(
        service=ServiceProcess(cfg, port, tmp_path / "service.log"),
        mqtt_port=broker.port,
        workdir=tmp_path,
        roster=roster,
        push_port=push_port,
    )
    try:
        stack.service.start()
        yield stack
    finally:
        stack.stop_publishing.set()
        for t in stack.publishers:
            t.join(30)
        stack.service.stop()
        broker.stop()


def show_with(target: BrowserContext | Page, token: str) -> None:
    """Give the wall (and the report page) a display token before its scripts run, as a deployment's wall
    has one in its session (wall-auth.js "crowdflow.wall"); the acting sign-in stays the test's to do."""
    target.add_init_script(f"sessionStorage.setItem('crowdflow.wall', {json.dumps(token)});")


def open_page(
    browser: Browser,
    url: str,
    viewport: ViewportSize,
    errors: list[str] | None = None,
    *,
    wall_token: str | None = None,
) -> Page:
    """A fresh context per page (own sessionStorage), console errors collected into `errors`. `wall_token`: the
    wall's display token, put in the page's session before it loads."""
    context = browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Europe/London")
    if wall_token is not None:
        show_with(context, wall_token)
    page = context.new_page()
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        # A failed resource's console line has no URL: record failed responses by URL instead.
        page.on(
            "console",
            lambda m: (
                errors.append(f"console.{m.type}: {m.text}")
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.goto(url)
    return page
