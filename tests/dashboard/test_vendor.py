"""Vendored front-end libraries: exactly the bytes npm shipped (per MANIFEST.json, written by
scripts/vendor-assets.sh), each with its licence, and no page or script under dashboard/static loads anything
from another host (the wall runs offline and leaks nothing to a CDN)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dashboard.app import STATIC_DIR

VENDOR = STATIC_DIR / "vendor"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vendor-assets.sh"
MANIFESTS = sorted(VENDOR.glob("*/MANIFEST.json"))
# An absolute or protocol-relative URL: http://x, https://x, //host.tld
ABSOLUTE_URL = re.compile(r"https?://|(?<![:\w])//[\w.-]+\.[a-z]", re.IGNORECASE)
# A minified library's leading licence banner (/*! ... */) may name its project's home page: text, not a load.
BANNER = re.compile(r"\A/\*!.*?\*/", re.DOTALL)
# XML namespace names (document.createElementNS for the SVG map) are identifiers, never fetched.
NAMESPACE = re.compile(r"http://www\.w3\.org/(?:2000/svg|1999/xlink|1999/xhtml|XML/1998/namespace)\b")
WEB_FILES = ("*.html", "*.js", "*.mjs", "*.css", "*.svg", "*.json", "*.webmanifest")


def manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_uplot_is_vendored() -> None:
    assert VENDOR / "uplot" / "MANIFEST.json" in MANIFESTS
    m = manifest(VENDOR / "uplot" / "MANIFEST.json")
    assert m["package"] == "uplot" and m["registry"] == "npm"
    assert {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"} <= set(m["files"])


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_every_file_matches_its_manifest(path: Path) -> None:
    m = manifest(path)
    shipped = {p.name for p in path.parent.iterdir() if p.is_file()} - {"MANIFEST.json"}
    assert shipped == set(m["files"]), "a file in the vendor dir is not in its manifest (or one is missing)"
    for name, entry in m["files"].items():
        digest = hashlib.sha256((path.parent / name).read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{path.parent.name}/{name} is not the file npm shipped"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_every_library_ships_its_licence(path: Path) -> None:
    m = manifest(path)
    assert "LICENSE" in m["files"]
    text = (path.parent / "LICENSE").read_text(encoding="utf-8")
    assert re.search(r"licen[cs]e|copyright", text, re.IGNORECASE) and len(text) > 200


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.parent.name)
def test_manifest_is_what_the_script_pins(path: Path) -> None:
    """The script is the one place a version is chosen: the committed files must come from it."""
    m = manifest(path)
    pins = re.findall(r'^vendor (\S+) (\S+) (\S+) \\\n\s+"(sha512-[^"]+)"', SCRIPT.read_text(), re.MULTILINE)
    assert (path.parent.name, m["package"], m["version"], m["integrity"]) in pins
    assert re.fullmatch(r"\d+\.\d+\.\d+", m["version"]), "pin an exact version"


def test_uplot_bundle_is_the_pinned_version() -> None:
    m = manifest(VENDOR / "uplot" / "MANIFEST.json")
    head = (VENDOR / "uplot" / "uPlot.iife.min.js").read_text(encoding="utf-8")[:200]
    assert f"(v{m['version']})" in head and "var uPlot=" in head


def web_files() -> list[Path]:
    found = {p for pattern in WEB_FILES for p in STATIC_DIR.rglob(pattern)}
    return sorted(found)


@pytest.mark.parametrize("path", web_files(), ids=lambda p: str(p.relative_to(STATIC_DIR)))
def test_nothing_loads_from_another_host(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if VENDOR in path.parents:
        text = BANNER.sub("", text, count=1)
    text = NAMESPACE.sub("", text)
    found = ABSOLUTE_URL.findall(text)
    assert not found, f"{path.relative_to(STATIC_DIR)} references another host: {found[:5]}"
    lowered = text.lower()
    for cdn in ("cdn.", "unpkg", "jsdelivr", "cdnjs", "googleapis", "gstatic", "bootcdn", "staticfile.org"):
        assert cdn not in lowered, f"{path.relative_to(STATIC_DIR)} mentions {cdn}"
    assert "@import" not in text or path.suffix != ".css", "CSS @import: load styles from the page instead"
