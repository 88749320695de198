"""alert_json / alert_mqtt_payload: names, colours, local ISO times."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

from alerts.encode import alert_json, alert_mqtt_payload
from alerts.lifecycle import AlertBook
from domain.levels import Level
from domain.site import Site
from domain.values import Alert, Detection, Diversion

T0 = dt.datetime(2026, 10, 1, 20, 30, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def _alert(site: Site) -> Alert:
    book = AlertBook(site, id_factory=lambda: "a1")
    book.observe([Detection(zone="seg-2", ts=T0, level=Level.III, cause="capacity", evidence={"share": 0.72})])
    book.observe([Detection(zone="seg-2", ts=T0 + 60, level=Level.II, cause="density", message="worse")])
    book.acknowledge("a1", by="officer-7", note="on it", now=T0 + 90)
    a = book.get("a1")
    assert a is not None
    return a


def test_alert_json(mini_site: Site) -> None:
    j = alert_json(_alert(mini_site), mini_site)
    assert j["id"] == "a1" and j["zone"] == "seg-2"
    assert j["zone_name"] == "Promenade segment 2" and j["zone_name_zh"] == "滨江步道2段"
    assert (j["grid"], j["micro_grid"]) == ("riverside", "rs-01")
    assert j["level"] == {
        "severity": 3,
        "name": "II",
        "label": "II orange",
        "colour": Level.II.colour,
        "colour_name": "orange",
    }
    assert j["peak_level"]["label"] == "II orange"
    assert j["state"] == "acknowledged" and j["open"] is True and j["cause"] == "density"
    assert j["opened_at"] == "2026-10-01T20:30:00+08:00" and j["opened_ts"] == T0
    assert j["updated_at"] == "2026-10-01T20:31:30+08:00" and j["resolved_at"] is None
    assert j["message"] == "worse"
    assert [(h["state"], h["level"], h["by"]) for h in j["history"]] == [
        ("raised", "III yellow", ""),
        ("escalated", "II orange", ""),
        ("acknowledged", "II orange", "officer-7"),
    ]
    assert [h["action"] for h in j["history"]] == ["raised", "level_up", "acknowledged"]
    assert j["acknowledged_by"] == "officer-7" and j["acknowledged_at"] == "2026-10-01T20:31:30+08:00"
    assert j["zone_kind"] == mini_site.zones["seg-2"].kind
    assert j["uncertain"] is False and j["inhibited_by"] is None and j["incident"] is None
    assert json.loads(json.dumps(j)) == j  # plain JSON all the way down


def test_alert_json_shows_signals_measures_and_diversion(mini_site: Site) -> None:
    a = _alert(mini_site)
    a.signals = {"density": 3, "sensor": 1}
    a.measures = ["单向通行 — One-way flow"]
    a.diversion = [Diversion(zone="seg-1", name="Promenade segment 1", spare=1200, share=0.41)]
    a.uncertain, a.uncertain_reason = True, "sensor health IV blue: a counter is stuck"
    j = alert_json(a, mini_site)
    assert j["signals"] == {"density": "II orange", "sensor": "IV blue"}
    assert j["measures"] == ["单向通行 — One-way flow"]
    assert j["diversion"] == [{"zone": "seg-1", "name": "Promenade segment 1", "spare": 1200, "share": 0.41}]
    assert j["uncertain"] is True and "stuck" in j["uncertain_reason"]


def test_mqtt_payload_is_the_same_json(mini_site: Site) -> None:
    a = _alert(mini_site)
    payload = alert_mqtt_payload(a, mini_site)
    assert isinstance(payload, bytes)
    assert json.loads(payload.decode("utf-8")) == alert_json(a, mini_site)
    assert "滨江步道2段".encode() in payload  # UTF-8, not \\u escapes


def test_alert_of_a_zone_no_longer_in_the_site(mini_site: Site) -> None:
    a = _alert(mini_site)
    a.zone = "demolished"
    j = alert_json(a, mini_site)
    # The grid recorded when the alert was raised still routes and groups it.
    assert j["zone_name"] == "demolished" and j["grid"] == "riverside" and j["zone_kind"] is None
