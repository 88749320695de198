"""CAP 1.2 export, checked against the CAP 1.2 specification's structure.

No well-kept Python package ships the CAP 1.2 XSD (see docs/cap.md), and tests never download: so the content
model the schema defines (element order and cardinality), its enumerations and its patterns are written below as
data, and every message is parsed back and checked against them.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from zoneinfo import ZoneInfo

import msgspec
import pytest

from alerts.cap import CAP_NS, cap_xml
from domain.geo import polygon_wgs84
from domain.levels import Level
from domain.loader import load_site
from domain.site import Site
from domain.values import Alert, AlertChange, Cause, Diversion

Q = "{" + CAP_NS + "}"
N = 10**6  # "unbounded"

# CAP 1.2 (OASIS Standard, 2010) content model: (element, minOccurs, maxOccurs) in schema sequence order.
ALERT_SEQUENCE = [
    ("identifier", 1, 1),
    ("sender", 1, 1),
    ("sent", 1, 1),
    ("status", 1, 1),
    ("msgType", 1, 1),
    ("source", 0, 1),
    ("scope", 1, 1),
    ("restriction", 0, 1),
    ("addresses", 0, 1),
    ("code", 0, N),
    ("note", 0, 1),
    ("references", 0, 1),
    ("incidents", 0, 1),
    ("info", 0, N),
]
INFO_SEQUENCE = [
    ("language", 0, 1),
    ("category", 1, N),
    ("event", 1, 1),
    ("responseType", 0, N),
    ("urgency", 1, 1),
    ("severity", 1, 1),
    ("certainty", 1, 1),
    ("audience", 0, 1),
    ("eventCode", 0, N),
    ("effective", 0, 1),
    ("onset", 0, 1),
    ("expires", 0, 1),
    ("senderName", 0, 1),
    ("headline", 0, 1),
    ("description", 0, 1),
    ("instruction", 0, 1),
    ("web", 0, 1),
    ("contact", 0, 1),
    ("parameter", 0, N),
    ("resource", 0, N),
    ("area", 0, N),
]
PARAMETER_SEQUENCE = [("valueName", 1, 1), ("value", 1, 1)]
AREA_SEQUENCE = [
    ("areaDesc", 1, 1),
    ("polygon", 0, N),
    ("circle", 0, N),
    ("geocode", 0, N),
    ("altitude", 0, 1),
    ("ceiling", 0, 1),
]
ENUMS = {
    "status": {"Actual", "Exercise", "System", "Test", "Draft"},
    "msgType": {"Alert", "Update", "Cancel", "Ack", "Error"},
    "scope": {"Public", "Restricted", "Private"},
    "category": {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra"}
    | {"CBRNE", "Other"},
    "responseType": {"Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"},
    "urgency": {"Immediate", "Expected", "Future", "Past", "Unknown"},
    "severity": {"Extreme", "Severe", "Moderate", "Minor", "Unknown"},
    "certainty": {"Observed", "Likely", "Possible", "Unlikely", "Unknown"},
}
# The schema's dateTime restriction: whole seconds and a numeric offset, never "Z".
DATETIME = r"\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d"
NO_SPECIALS = r"[^\s,&<]+"
REFERENCE = rf"{NO_SPECIALS},{NO_SPECIALS},{DATETIME}"
REFERENCES = re.compile(rf"{REFERENCE}(\s+{REFERENCE})*")

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 12, 31, 23, 40, tzinfo=SHANGHAI).timestamp()
SENDER = "crowdflow@lujiazui.example"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site()


def _alert(**over: object) -> Alert:
    base = Alert(
        id="a1b2c3",
        zone="riverside-s03",
        level=Level.II,
        peak_level=Level.II,
        cause="capacity",
        state="raised",
        opened_at=T0,
        updated_at=T0,
        evidence={"occupancy": 4100.0, "capacity": 5000.0, "share": 0.82, "density": 2.4, "inflow_per_min": 340.0},
        message="Riverside S03 at 82% of capacity & rising",
        history=[AlertChange(ts=T0, state="raised", level=Level.II, action="raised")],
        grid="riverside-belt",
        micro_grid="rsb-02-west",
        measures=["one-way flow on the promenade", "alternating gates at the stairs"],
        diversion=[Diversion(zone="riverside-s04", name="Riverside S04", spare=1200, share=0.41)],
    )
    return msgspec.structs.replace(base, **over)


def _raised() -> Alert:
    return _alert()


def _updated() -> Alert:
    """Raised at II orange, rose to I red 5 min later, acknowledged 2 min after that."""
    return _alert(
        level=Level.I,
        peak_level=Level.I,
        state="acknowledged",
        updated_at=T0 + 420,
        escalated_at=T0 + 300,
        acknowledged_at=T0 + 420,
        acknowledged_by="officer-7",
        history=[
            AlertChange(ts=T0, state="raised", level=Level.II, action="raised"),
            AlertChange(ts=T0 + 300, state="escalated", level=Level.I, note="II orange → I red", action="level_up"),
            AlertChange(ts=T0 + 420, state="acknowledged", level=Level.I, by="officer-7", action="acknowledged"),
        ],
    )


def _resolved() -> Alert:
    return _alert(
        level=Level.NORMAL,
        peak_level=Level.I,
        state="resolved",
        updated_at=T0 + 1800,
        resolved_at=T0 + 1800,
        evidence={"occupancy": 2100.0, "capacity": 5000.0, "share": 0.42},
        history=[
            AlertChange(ts=T0, state="raised", level=Level.II, action="raised"),
            AlertChange(ts=T0 + 300, state="escalated", level=Level.I, action="level_up"),
            AlertChange(ts=T0 + 1800, state="resolved", level=Level.NORMAL, action="resolved"),
        ],
    )


def _parse(xml: bytes) -> ET.Element:
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(xml)


def _local(el: ET.Element) -> str:
    assert el.tag.startswith(Q), f"{el.tag} is outside the CAP 1.2 namespace"
    return el.tag[len(Q) :]


def check_sequence(el: ET.Element, sequence: list[tuple[str, int, int]]) -> None:
    """Children of `el` follow the schema's sequence: known names, in order, each within its occurrence bounds."""
    order = {name: i for i, (name, _, _) in enumerate(sequence)}
    names = [_local(child) for child in el]
    unknown = [n for n in names if n not in order]
    assert not unknown, f"<{_local(el)}> has elements CAP 1.2 does not define there: {unknown}"
    positions = [order[n] for n in names]
    assert positions == sorted(positions), f"<{_local(el)}> children out of schema order: {names}"
    for name, lo, hi in sequence:
        assert lo <= names.count(name) <= hi, f"<{_local(el)}> has {names.count(name)} <{name}>, needs {lo}..{hi}"


def check_cap(root: ET.Element) -> None:
    """Everything the CAP 1.2 schema and the spec's text require of a message, as far as we use it."""
    assert root.tag == Q + "alert"
    check_sequence(root, ALERT_SEQUENCE)
    for el in root.iter():
        _local(el)  # no element outside the namespace
        name = _local(el)
        if name in ENUMS:
            assert el.text in ENUMS[name], f"<{name}>{el.text}</{name}> is not a CAP 1.2 value"
        if name in ("sent", "effective", "onset", "expires"):
            assert el.text is not None and re.fullmatch(DATETIME, el.text), f"<{name}> {el.text!r}"
            assert not el.text.endswith("+00:00"), "CAP writes UTC as -00:00"
    for name in ("identifier", "sender"):
        text = root.findtext(Q + name)
        assert text and re.fullmatch(NO_SPECIALS, text), f"<{name}> {text!r} has a space, comma, '<' or '&'"
    refs = root.findtext(Q + "references")
    if refs is not None:
        assert REFERENCES.fullmatch(refs), refs
    for info in root.findall(Q + "info"):
        check_sequence(info, INFO_SEQUENCE)
        for param in info.findall(Q + "parameter"):
            check_sequence(param, PARAMETER_SEQUENCE)
        for area in info.findall(Q + "area"):
            check_sequence(area, AREA_SEQUENCE)
            for polygon in area.findall(Q + "polygon"):
                pairs = [tuple(float(v) for v in p.split(",")) for p in (polygon.text or "").split()]
                assert len(pairs) >= 4, "a CAP polygon has at least 4 points"
                assert pairs[0] == pairs[-1], "a CAP polygon is closed"
                for lat, lon in pairs:
                    assert -90 <= lat <= 90 and -180 <= lon <= 180


def _infos(root: ET.Element) -> dict[str, ET.Element]:
    return {info.findtext(Q + "language", ""): info for info in root.findall(Q + "info")}


def _params(info: ET.Element) -> dict[str, str]:
    return {p.findtext(Q + "valueName", ""): p.findtext(Q + "value", "") for p in info.findall(Q + "parameter")}


@pytest.mark.parametrize("make", [_raised, _updated, _resolved])
def test_every_message_has_the_cap_1_2_structure(site: Site, make: Callable[[], Alert]) -> None:
    root = _parse(cap_xml(make(), site))
    check_cap(root)
    assert set(_infos(root)) == {"zh-CN", "en-US"}


def test_the_structure_check_catches_a_misordered_message(site: Site) -> None:
    root = _parse(cap_xml(_raised(), site))
    sent = root.find(Q + "sent")
    assert sent is not None
    root.remove(sent)
    root.append(sent)  # <sent> after <info>
    with pytest.raises(AssertionError, match="out of schema order"):
        check_cap(root)
    info = _parse(cap_xml(_raised(), site)).find(Q + "info")
    assert info is not None
    ET.SubElement(info, Q + "colour").text = "orange"
    with pytest.raises(AssertionError, match="does not define"):
        check_sequence(info, INFO_SEQUENCE)


def test_raised_alert(site: Site) -> None:
    root = _parse(cap_xml(_raised(), site))
    assert root.findtext(Q + "identifier") == "crowdflow-a1b2c3-1"
    assert root.findtext(Q + "sender") == SENDER
    assert root.findtext(Q + "sent") == "2026-12-31T23:40:00+08:00"
    assert root.findtext(Q + "status") == "Actual"
    assert root.findtext(Q + "msgType") == "Alert"
    assert root.findtext(Q + "scope") == "Public"
    assert root.find(Q + "references") is None  # only an Update or a Cancel refers back
    zh, en = _infos(root)["zh-CN"], _infos(root)["en-US"]
    for info in (zh, en):
        assert info.findtext(Q + "category") == "Safety"
        assert [r.text for r in info.findall(Q + "responseType")] == ["Avoid"]
        assert info.findtext(Q + "urgency") == "Immediate"
        assert info.findtext(Q + "severity") == "Severe"
        assert info.findtext(Q + "certainty") == "Observed"
        assert info.find(Q + "expires") is None  # open: live until its Update or Cancel
        assert _params(info) == {
            "level": "II orange",
            "peak_level": "II orange",
            "colour": Level.II.colour,
            "cause": "capacity",
            "state": "raised",
            "zone": "riverside-s03",
            "grid": "riverside-belt",
            "micro_grid": "rsb-02-west",
        }
    zone = site.zones["riverside-s03"]
    assert zh.findtext(Q + "event") == "人群聚集风险"
    assert en.findtext(Q + "event") == "Crowd crush risk"
    assert zh.findtext(Q + "headline") == f"{zone.name_zh} II级橙色预警：在场人数接近容量上限"
    assert en.findtext(Q + "headline") == f"II orange crowd warning, {zone.name_en}: occupancy near capacity"
    zh_desc, en_desc = zh.findtext(Q + "description", ""), en.findtext(Q + "description", "")
    assert "在场约 4,100 人，容量 5,000 人（82%）" in zh_desc
    assert "密度 2.4 人/平方米" in zh_desc and "每分钟进入 340 人" in zh_desc
    assert "About 4,100 people present of a capacity of 5,000 (82%)" in en_desc
    assert "density 2.4 people/m²" in en_desc and "340 people/min coming in" in en_desc
    assert "Riverside S03 at 82% of capacity & rising" in en_desc  # '&' escaped on the wire, intact when read
    s04 = site.zones["riverside-s04"]
    assert zh.findtext(Q + "instruction") == (
        "one-way flow on the promenade；alternating gates at the stairs；"
        f"可分流至：{s04.name_zh}（尚可容纳约 1,200 人）。"
    )
    assert en.findtext(Q + "instruction") == (
        "one-way flow on the promenade; alternating gates at the stairs; "
        f"Divert people to: {s04.name_en} (room for about 1,200)."
    )
    assert zh.findtext(f"{Q}area/{Q}areaDesc") == zone.name_zh
    assert en.findtext(f"{Q}area/{Q}areaDesc") == zone.name_en


def test_area_polygon_is_the_zone_ring(site: Site) -> None:
    root = _parse(cap_xml(_raised(), site))
    ring = polygon_wgs84(site, "riverside-s03")
    for info in root.findall(Q + "info"):
        text = info.findtext(f"{Q}area/{Q}polygon", "")
        pairs = [tuple(float(v) for v in p.split(",")) for p in text.split()]
        assert len(pairs) == len(ring) >= 4
        for (lat, lon), (rlat, rlon) in zip(pairs, ring, strict=True):
            assert lat == pytest.approx(rlat, abs=5e-7) and lon == pytest.approx(rlon, abs=5e-7)
            assert 31.22 <= lat <= 31.26 and 121.48 <= lon <= 121.53  # Lujiazui


def test_update_after_level_change_and_acknowledgement(site: Site) -> None:
    root = _parse(cap_xml(_updated(), site))
    assert root.findtext(Q + "msgType") == "Update"
    assert root.findtext(Q + "identifier") == "crowdflow-a1b2c3-3"
    assert root.findtext(Q + "sent") == "2026-12-31T23:47:00+08:00"  # the acknowledgement this message reports
    first = f"{SENDER},crowdflow-a1b2c3-1,2026-12-31T23:40:00+08:00"
    previous = f"{SENDER},crowdflow-a1b2c3-2,2026-12-31T23:45:00+08:00"
    assert root.findtext(Q + "references") == f"{first} {previous}"
    note = root.findtext(Q + "note", "")
    assert "acknowledged" in note and "officer-7" not in note  # public scope: nobody's name
    for info in root.findall(Q + "info"):
        assert [r.text for r in info.findall(Q + "responseType")] == ["Evacuate", "Avoid"]
        assert (info.findtext(Q + "urgency"), info.findtext(Q + "severity")) == ("Immediate", "Extreme")
        assert _params(info)["level"] == "I red"
        assert _params(info)["state"] == "acknowledged"
    assert "I级红色预警" in (_infos(root)["zh-CN"].findtext(Q + "headline") or "")


def test_one_alert_story_gives_a_chain_of_messages(site: Site) -> None:
    story = [
        AlertChange(ts=T0, state="raised", level=Level.II, action="raised"),
        AlertChange(ts=T0 + 300, state="escalated", level=Level.I, action="level_up"),
        AlertChange(ts=T0 + 420, state="acknowledged", level=Level.I, by="officer-7", action="acknowledged"),
        AlertChange(ts=T0 + 1800, state="resolved", level=Level.NORMAL, action="resolved"),
    ]
    roots = []
    for k in range(1, len(story) + 1):
        last = story[k - 1]
        alert = _alert(level=last.level, state=last.state, history=story[:k], updated_at=last.ts)
        roots.append(_parse(cap_xml(alert, site)))
    assert [r.findtext(Q + "msgType") for r in roots] == ["Alert", "Update", "Update", "Cancel"]
    ids = [r.findtext(Q + "identifier", "") for r in roots]
    sent = [r.findtext(Q + "sent", "") for r in roots]
    assert len(set(ids)) == 4
    assert sent == [
        "2026-12-31T23:40:00+08:00",
        "2026-12-31T23:45:00+08:00",
        "2026-12-31T23:47:00+08:00",
        "2027-01-01T00:10:00+08:00",
    ]
    for k, root in enumerate(roots[1:], start=1):
        refs = [tuple(r.split(",")) for r in root.findtext(Q + "references", "").split()]
        assert refs[0] == (SENDER, ids[0], sent[0])  # every later message points at the first
        assert refs[-1] == (SENDER, ids[k - 1], sent[k - 1])  # and at the one just before it
    notes = [r.findtext(Q + "note", "") for r in roots]
    assert notes[0] == "" and "I red" in notes[1] and "acknowledged" in notes[2] and "lifted" in notes[3]


def test_resolved_alert_is_a_cancel_with_all_clear(site: Site) -> None:
    root = _parse(cap_xml(_resolved(), site))
    assert root.findtext(Q + "msgType") == "Cancel"
    assert root.findtext(Q + "sent") == "2027-01-01T00:10:00+08:00"
    assert root.findtext(Q + "references", "").startswith(f"{SENDER},crowdflow-a1b2c3-1,2026-12-31T23:40:00+08:00")
    zh, en = _infos(root)["zh-CN"], _infos(root)["en-US"]
    for info in (zh, en):
        assert [r.text for r in info.findall(Q + "responseType")] == ["AllClear"]
        assert info.findtext(Q + "urgency") == "Past"
        assert info.findtext(Q + "severity") == "Minor"
        assert info.findtext(Q + "expires") == "2027-01-01T01:10:00+08:00"  # an hour of all clear
        assert _params(info)["level"] == "normal"
        assert _params(info)["peak_level"] == "I red"
    assert "解除" in (zh.findtext(Q + "headline") or "")
    assert "最高曾达I级红色" in (zh.findtext(Q + "description") or "")
    assert (en.findtext(Q + "headline") or "").startswith("All clear")
    assert "one-way" not in (en.findtext(Q + "instruction") or "")  # measures no longer apply


@pytest.mark.parametrize(
    ("level", "urgency", "severity", "responses"),
    [
        (Level.I, "Immediate", "Extreme", ["Evacuate", "Avoid"]),
        (Level.II, "Immediate", "Severe", ["Avoid"]),
        (Level.III, "Expected", "Moderate", ["Prepare"]),
        (Level.IV, "Future", "Minor", ["Monitor"]),
    ],
)
def test_levels_map_to_urgency_severity_and_response(
    site: Site, level: Level, urgency: str, severity: str, responses: list[str]
) -> None:
    alert = _alert(level=level, peak_level=level, history=[AlertChange(ts=T0, state="raised", level=level)])
    root = _parse(cap_xml(alert, site))
    check_cap(root)
    for info in root.findall(Q + "info"):
        assert info.findtext(Q + "urgency") == urgency
        assert info.findtext(Q + "severity") == severity
        assert [r.text for r in info.findall(Q + "responseType")] == responses
        assert _params(info)["colour"] == level.colour


@pytest.mark.parametrize(
    ("cause", "uncertain", "certainty"),
    [
        ("capacity", False, "Observed"),
        ("density", False, "Observed"),
        ("forecast", False, "Likely"),
        ("surge", False, "Likely"),
        ("stall", False, "Observed"),
        ("counterflow", False, "Observed"),
        ("sensor", False, "Possible"),
        ("capacity", True, "Possible"),
        ("forecast", True, "Possible"),
    ],
)
def test_certainty_follows_the_cause_and_sensor_health(
    site: Site, cause: Cause, uncertain: bool, certainty: str
) -> None:
    root = _parse(cap_xml(_alert(cause=cause, uncertain=uncertain), site))
    for info in root.findall(Q + "info"):
        assert info.findtext(Q + "certainty") == certainty
        assert ("uncertain" in _params(info)) is uncertain
    en = _infos(root)["en-US"].findtext(Q + "description", "")
    assert ("numbers above may be wrong" in en) is uncertain


def test_forecast_gives_the_expected_onset(site: Site) -> None:
    alert = _alert(cause="forecast", evidence={"eta_min_red": 12.0, "forecast_15": 5200.0, "forecast_30": 6100.0})
    root = _parse(cap_xml(alert, site))
    check_cap(root)
    en = _infos(root)["en-US"]
    assert en.findtext(Q + "onset") == "2026-12-31T23:52:00+08:00"
    assert "Forecast to reach I red in about 12 min" in en.findtext(Q + "description", "")
    assert "forecast 5,200 people in 15 min" in en.findtext(Q + "description", "")


def test_incident_is_named_in_incidents_and_parameters(site: Site) -> None:
    root = _parse(cap_xml(_alert(incident="inc 7"), site))
    check_cap(root)
    assert root.findtext(Q + "incidents") == "inc_7"  # CAP separates incidents by spaces
    assert _params(_infos(root)["en-US"])["incident"] == "inc 7"


def test_text_is_escaped_and_chinese_survives(site: Site) -> None:
    alert = _alert(
        id="id with, spaces&<",
        message='Crowd at "Pearl" <east> & west \x07bell',
        measures=["单向通行 <东侧> & 西侧"],
    )
    xml = cap_xml(alert, site)
    assert "单向通行".encode() in xml  # UTF-8, not character references
    root = _parse(xml)
    check_cap(root)
    assert root.findtext(Q + "identifier") == "crowdflow-id_with__spaces__-1"
    en = _infos(root)["en-US"]
    assert 'Crowd at "Pearl" <east> & west bell' in en.findtext(Q + "description", "")  # BEL cannot be in XML
    assert (_infos(root)["zh-CN"].findtext(Q + "instruction") or "").startswith("单向通行 <东侧> & 西侧；")


def test_utc_is_written_minus_zero(site: Site) -> None:
    utc = Site(msgspec.structs.replace(site.file, site=msgspec.structs.replace(site.info, timezone="UTC")), "utc")
    root = _parse(cap_xml(_resolved(), utc))
    check_cap(root)
    assert root.findtext(Q + "sent") == "2026-12-31T16:10:00-00:00"


def test_export_is_stable_and_now_only_fills_a_missing_history(site: Site) -> None:
    alert = _updated()
    assert cap_xml(alert, site) == cap_xml(alert, site, now=T0 + 99_999)
    bare = _alert(history=[])
    root = _parse(cap_xml(bare, site, now=T0 + 5))
    check_cap(root)
    assert root.findtext(Q + "sent") == "2026-12-31T23:40:05+08:00"
    assert root.findtext(Q + "msgType") == "Alert"


def test_zone_missing_from_the_site_still_exports(site: Site) -> None:
    root = _parse(cap_xml(_alert(zone="old-zone", grid="", micro_grid=""), site))
    check_cap(root)
    for info in root.findall(Q + "info"):
        assert info.findtext(f"{Q}area/{Q}areaDesc") == "old-zone"
        assert info.find(f"{Q}area/{Q}polygon") is None
        assert "grid" not in _params(info)


def test_no_measures_falls_back_to_level_advice(site: Site) -> None:
    root = _parse(cap_xml(_alert(level=Level.I, measures=[], diversion=[]), site))
    assert _infos(root)["en-US"].findtext(Q + "instruction") == (
        "Stop all entry and lead people out calmly by the marked exits."
    )


def test_bad_sender_and_bad_timezone_say_what_to_do(site: Site) -> None:
    with pytest.raises(ValueError, match="without spaces, commas"):
        cap_xml(_raised(), site, sender="crowd flow, Lujiazui")
    bad = Site(msgspec.structs.replace(site.file, site=msgspec.structs.replace(site.info, timezone="Mars/Olympus")))
    with pytest.raises(ValueError, match=r"\[site\] timezone = 'Mars/Olympus'.*Asia/Shanghai"):
        cap_xml(_raised(), bad)


def test_a_hand_built_resolved_alert_cancels_its_own_first_message(site: Site) -> None:
    bare = _alert(state="resolved", level=Level.NORMAL, history=[], resolved_at=T0 + 600, updated_at=T0 + 600)
    root = _parse(cap_xml(bare, site))
    check_cap(root)
    assert root.findtext(Q + "identifier") == "crowdflow-a1b2c3-2"
    assert root.findtext(Q + "sent") == "2026-12-31T23:50:00+08:00"
    assert root.findtext(Q + "references") == f"{SENDER},crowdflow-a1b2c3-1,2026-12-31T23:40:00+08:00"
