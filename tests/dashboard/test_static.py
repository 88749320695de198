"""The wall page is served and uses only local assets: no CDN, no external font, no absolute URL, nothing inline
that the page's CSP would block, and the DOM ids the browser tests and operators rely on."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from dashboard.app import STATIC_DIR, create_app
from dashboard.hub import Hub
from tests.dashboard.client import TestClient

ABSOLUTE_URL = re.compile(r"https?://|(?<![:\w])//[\w.-]+\.\w", re.IGNORECASE)
SVG_NS = "http://www.w3.org/2000/svg"  # an XML namespace name, never fetched
# A minified library's leading licence banner (/*! ... */) may name its project's home page: text, not a load.
BANNER = re.compile(r"\A/\*!.*?\*/", re.DOTALL)
WALL_SCRIPTS = sorted(p.name for p in STATIC_DIR.glob("wall-*.js"))
# Shared by the wall and the officer page: DOM and format helpers (CF.ui), then the /ws client (CF.openStream).
SHARED_SCRIPTS = ["common.js", "stream.js"]
# Every page, script and stylesheet served from dashboard/static, vendored ones included (as paths under it).
ASSETS = sorted(str(p.relative_to(STATIC_DIR)) for ext in ("js", "html", "css") for p in STATIC_DIR.rglob(f"*.{ext}"))
OWN_ASSETS = [a for a in ASSETS if not a.startswith("vendor/")]
PAGES = [a for a in OWN_ASSETS if a.endswith(".html")]
# Ways to put markup (not text) into the page: data from the service must only ever arrive as text.
MARKUP_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment")
WALL_IDS = {
    # docs/contract: map, headline, strip, feed, sign-in, connection, health, detail, emergency, response
    "map", "zone-list", "zone-detail", "zd-close", "zd-charts", "people-now", "arrivals", "arrivals-pct",
    "open-alerts", "level-counts", "strip", "alert-list", "signin", "signin-token", "signin-submit", "whoami",
    "conn", "clock", "health", "health-zones", "banner", "emergency", "response",
}  # fmt: skip


class Page(HTMLParser):
    """Script and stylesheet references, ids, and anything inline (blocked by the CSP: default-src 'self')."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.ids: set[str] = set()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "script":
            if a.get("src"):
                self.scripts.append(str(a["src"]))
            else:
                self.inline.append("<script> without src")
        if tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(str(a.get("href")))
        if tag == "style":
            self.inline.append("<style>")
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"{tag} {name}=")


@pytest.fixture
def client(hub: Hub) -> TestClient:
    return TestClient(create_app(hub))


@pytest.fixture(scope="module")
def page() -> Page:
    p = Page()
    p.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    return p


def test_index_is_served_with_its_local_assets(client: TestClient, page: Page) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for ref in page.scripts + page.styles:
        assert not ref.startswith(("/", "http")), ref
        assert client.get("/" + ref).status_code == 200, ref
    assert "DATA STALE" in client.get("/app.js").text  # the stale banner exists in the page logic


def test_scripts_load_in_dependency_order(page: Page) -> None:
    s = page.scripts
    assert s[-1] == "app.js", "app.js starts the wall: it must come after every module"
    assert s.index("vendor/uplot/uPlot.iife.min.js") < s.index("charts.js") < s.index("wall-detail.js")
    assert s.index("common.js") < s.index("stream.js") < s.index("wall-util.js")
    assert s.index("wall-util.js") == min(s.index(w) for w in WALL_SCRIPTS)
    assert sorted(x for x in s if x.startswith("wall-")) == WALL_SCRIPTS, "every wall module is loaded, once"
    assert "vendor/uplot/uPlot.min.css" in page.styles and "style.css" in page.styles


def test_the_officer_page_loads_the_shared_scripts_before_its_own() -> None:
    p = Page()
    p.feed((STATIC_DIR / "officer.html").read_text(encoding="utf-8"))
    assert p.scripts == [*SHARED_SCRIPTS, "officer.js"]


def test_nothing_inline_that_the_csp_blocks(page: Page) -> None:
    assert page.inline == []


@pytest.mark.parametrize("name", PAGES)
def test_no_page_has_anything_inline_that_the_csp_blocks(name: str) -> None:
    p = Page()
    p.feed((STATIC_DIR / name).read_text(encoding="utf-8"))
    assert p.inline == [], name
    for ref in p.scripts + p.styles:
        assert not ref.startswith(("/", "http")) and (STATIC_DIR / ref).is_file(), f"{name} loads {ref}"


def test_the_asset_globs_see_every_page_and_script() -> None:
    """The checks below cover what is there now, not a list that a new file could miss."""
    pages = {"officer.html", "report.html", "officer.css", "report.css"}
    vendored = {"vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css"}
    assert {"officer.js", "report.js", "charts.js", "sw.js", *SHARED_SCRIPTS} | pages | vendored <= set(ASSETS)
    assert not any(a.startswith("vendor/") for a in OWN_ASSETS)


def test_the_dom_contract_ids_exist(page: Page) -> None:
    assert page.ids >= WALL_IDS, sorted(WALL_IDS - page.ids)


@pytest.mark.parametrize("name", ASSETS)
def test_no_external_urls_in_assets(name: str) -> None:
    text = BANNER.sub("", (STATIC_DIR / name).read_text(encoding="utf-8")).replace(SVG_NS, "")
    assert not ABSOLUTE_URL.findall(text), f"{name} references an external URL"
    assert "@import" not in text and "fonts.googleapis" not in text


def test_colours_come_from_the_site_except_unknown_grey() -> None:
    """Level colours are read from site.levels (domain/levels.py); the only data colour in the code is the grey."""
    from domain.levels import Level

    for name in ["app.js", "officer.js", "style.css", *SHARED_SCRIPTS, *WALL_SCRIPTS]:
        text = (STATIC_DIR / name).read_text(encoding="utf-8").lower()
        for lv in Level:
            assert lv.colour.lower() not in text, f"{name} hard-codes {lv.label}'s colour {lv.colour}"
    assert "#757575" in (STATIC_DIR / "common.js").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", OWN_ASSETS)
def test_data_reaches_the_page_as_text_only(name: str) -> None:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    found = [sink for sink in MARKUP_SINKS if sink in text]
    assert found == [], f"{name} uses {found}"


def test_emergency_layout_and_response_section_are_wired() -> None:
    js = (STATIC_DIR / "wall-response.js").read_text(encoding="utf-8")
    assert "EMERGENCY MODE" in js and "/api/metrics/response" in js
    assert "body.emergency" in (STATIC_DIR / "style.css").read_text(encoding="utf-8")


def test_pages_forbid_third_party_loads(client: TestClient) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in csp and "ws://127.0.0.1" in csp
    assert client.get("/nope.js").status_code == 404
