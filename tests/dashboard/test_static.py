"""The wall page is served and uses only local assets: no CDN, no external font, no absolute URL."""

from __future__ import annotations

import re

import pytest

from dashboard.app import STATIC_DIR, create_app
from dashboard.hub import Hub
from tests.dashboard.client import TestClient

ABSOLUTE_URL = re.compile(r"https?://|(?<![:\w])//[\w.-]+\.\w", re.IGNORECASE)


@pytest.fixture
def client(hub: Hub) -> TestClient:
    return TestClient(create_app(hub))


def test_index_is_served_with_its_local_assets(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(refs) == ["app.js", "style.css"]
    for ref in refs:
        asset = client.get("/" + ref)
        assert asset.status_code == 200, ref
    assert "DATA STALE" in client.get("/app.js").text  # the stale banner exists in the page logic


@pytest.mark.parametrize("name", ["index.html", "app.js", "style.css"])
def test_no_external_urls_in_assets(name: str) -> None:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    assert not ABSOLUTE_URL.findall(text), f"{name} references an external URL"
    assert "@import" not in text and "fonts.googleapis" not in text


def test_pages_forbid_third_party_loads(client: TestClient) -> None:
    csp = client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in csp and "ws://testserver" in csp
    assert client.get("/nope.js").status_code == 404
