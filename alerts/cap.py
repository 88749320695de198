"""An alert as an OASIS CAP 1.2 message: the format public warning systems exchange (China's national warning
release standard builds on it), so a crowd alert can be passed on to them and to any CAP-reading map or feed.

One message per recorded change of the alert: the first is msgType Alert, every later change (level up or down,
acknowledgement, comment, re-raise...) an Update, the resolution a Cancel. The message's identity (identifier,
sent, references) comes from the change it reports, so exporting it again gives the same identity; the
description carries the freshest numbers the alert holds. Element order follows the CAP 1.2 schema; see
docs/cap.md for what each element carries.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import xml.etree.ElementTree as ET
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.geo import polygon_wgs84
from domain.levels import Level
from domain.site import Site, Zone
from domain.values import Alert, Cause

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
LANGUAGES = ("zh-CN", "en-US")
CANCEL_VALID_S = 3600.0  # how long a Cancel (all clear) stays on receivers' screens

_Q = "{" + CAP_NS + "}"
_NOT_IN_ID = re.compile(r"[\s,<&]")  # CAP 1.2: identifier and sender carry no spaces, commas, '<' or '&'
# Characters XML 1.0 cannot carry at all, even escaped; ElementTree would write them and break the document.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_SEVERITY = {Level.I: "Extreme", Level.II: "Severe", Level.III: "Moderate", Level.IV: "Minor"}
_URGENCY = {Level.I: "Immediate", Level.II: "Immediate", Level.III: "Expected", Level.IV: "Future"}
# I red: leave and keep away; II orange: keep away; III yellow: get ready; IV blue: keep an eye on it.
_RESPONSE: dict[Level, tuple[str, ...]] = {
    Level.I: ("Evacuate", "Avoid"),
    Level.II: ("Avoid",),
    Level.III: ("Prepare",),
    Level.IV: ("Monitor",),
}
_CERTAINTY: dict[Cause, str] = {
    "capacity": "Observed",
    "density": "Observed",
    "stall": "Observed",
    "counterflow": "Observed",
    "surge": "Likely",
    "forecast": "Likely",
    "sensor": "Possible",
}
_ZH_COLOUR = {Level.I: "红色", Level.II: "橙色", Level.III: "黄色", Level.IV: "蓝色", Level.NORMAL: "绿色"}

_WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "event": "人群聚集风险",
        "event_sensor": "客流监测中断",
        "sender": "{site}人流监测预警",
        "headline": "{zone} {level}预警：{cause}",
        "headline_clear": "{zone} 人群聚集预警解除",
        "recovered": "{zone}人流已恢复正常（最高曾达{level}）。",
        "clear": "预警解除，恢复正常管理。",
        "uncertain": "部分传感器异常，以上数据可能不准。",
        "divert": "可分流至：{targets}",
        "room": "{name}（尚可容纳约 {spare:,} 人）",
        "sep": "；",
        "stop": "。",
    },
    "en-US": {
        "event": "Crowd crush risk",
        "event_sensor": "Crowd monitoring outage",
        "sender": "{site} crowd monitoring",
        "headline": "{level} crowd warning, {zone}: {cause}",
        "headline_clear": "All clear, {zone}: crowd warning lifted",
        "recovered": "{zone} is back to normal (peak {level}).",
        "clear": "The warning is lifted; normal operation resumes.",
        "uncertain": "Some sensors are faulty: the numbers above may be wrong.",
        "divert": "Divert people to: {targets}",
        "room": "{name} (room for about {spare:,})",
        "sep": "; ",
        "stop": ".",
    },
}
_CAUSE: dict[str, dict[Cause, str]] = {
    "zh-CN": {
        "capacity": "在场人数接近容量上限",
        "density": "人群密度过高",
        "surge": "客流异常突增",
        "forecast": "预计将达到容量上限",
        "stall": "出口滞流",
        "counterflow": "双向对冲人流",
        "sensor": "监测设备故障",
    },
    "en-US": {
        "capacity": "occupancy near capacity",
        "density": "crowd density too high",
        "surge": "arrivals far above the usual",
        "forecast": "forecast to reach capacity",
        "stall": "outflow stalled",
        "counterflow": "counter-flow",
        "sensor": "sensor fault",
    },
}
_ADVICE = {  # used when the alert carries no measures of its own
    "zh-CN": {
        Level.I: "立即停止进入，引导人群从指定出口有序离开",
        Level.II: "暂停或限制进入，实行单向通行",
        Level.III: "加强现场引导，做好限流准备",
        Level.IV: "密切关注客流变化",
    },
    "en-US": {
        Level.I: "Stop all entry and lead people out calmly by the marked exits",
        Level.II: "Hold or restrict entry and run one-way flow",
        Level.III: "Step up stewarding and get ready to meter entry",
        Level.IV: "Watch the flow",
    },
}
# What the latest change was, for `note` (CAP: the reason for an Update or a Cancel). Public scope: no names.
_NOTE = {
    "level_up": "级别升至{zh} / level raised to {en}",
    "level_down": "级别降至{zh} / level lowered to {en}",
    "acknowledged": "值班人员已确认 / acknowledged by the duty team",
    "commented": "处置进展已更新 / response update added",
    "reraised": "确认超时仍未解除，重新预警 / still open after the acknowledgement ran out: raised again",
    "resolved": "预警解除 / warning lifted",
    "uncertain": "部分传感器异常，数据可能不准 / some sensors are faulty: the numbers may be wrong",
    "certain": "传感器恢复正常 / sensors back to normal",
    "inhibited": "已并入该区域更高级别预警 / covered by a worse alert in the zone",
    "uninhibited": "不再并入更高级别预警 / no longer covered by a worse alert",
    "silenced": "已静默 / silenced by the operators",
    "unsilenced": "静默结束 / silence ended",
}


def cap_xml(alert: Alert, site: Site, *, sender: str = "crowdflow@lujiazui.example", now: float | None = None) -> bytes:
    """The alert's latest message as CAP 1.2 XML (UTF-8 bytes, with an XML declaration).

    `sender` names this system to receivers (CAP: no spaces, commas, '<' or '&'). `now` is the time of the
    export; it is used only for an alert that records no change times (a hand-built one): otherwise the message's
    `sent` is the time of the change it reports, so a receiver that sees it twice recognises it.
    """
    if not sender or _NOT_IN_ID.search(sender):
        raise ValueError(
            f"CAP sender {sender!r} must be non-empty without spaces, commas, '<' or '&'; "
            "use an address such as crowdflow@your-district.example"
        )
    if not alert.id:
        raise ValueError("alert has no id: a CAP identifier is built from it")
    tz = _timezone(site)
    resolved = alert.state == "resolved"
    # One message per recorded change, sent at the change's time.
    times = [c.ts for c in alert.history] or [now if now is not None else alert.updated_at]
    if resolved and len(times) == 1:  # hand-built: the Cancel needs an Alert before it to cancel
        times = [alert.opened_at, alert.resolved_at if alert.resolved_at is not None else alert.updated_at]
    for ts in times:
        if not math.isfinite(ts):
            raise ValueError(f"alert {alert.id!r} has a change at time {ts}: times must be finite epoch seconds")
    msg_type = "Cancel" if resolved else ("Alert" if len(times) == 1 else "Update")
    base = "crowdflow-" + _NOT_IN_ID.sub("_", alert.id)
    sent_ts = times[-1]
    # The history is capped; the revision counter is not, so identifiers never repeat on a long alert.
    n = max(alert.revision, len(times))

    root = ET.Element(_Q + "alert")
    _add(root, "identifier", f"{base}-{n}")
    _add(root, "sender", sender)
    _add(root, "sent", _cap_time(sent_ts, tz))
    _add(root, "status", "Actual")
    _add(root, "msgType", msg_type)
    _add(root, "scope", "Public")
    if msg_type != "Alert":
        last = alert.history[-1] if alert.history else None
        note = _NOTE.get("resolved" if resolved else last.action if last else "")
        if note:
            level = last.level if last else alert.level
            _add(root, "note", note.format(zh=_level_zh(level), en=level.label))
        refs = [f"{sender},{base}-1,{_cap_time(times[0], tz)}"]
        if len(times) > 2:  # also the message just before this one, for receivers that chain updates
            refs.append(f"{sender},{base}-{n - 1},{_cap_time(times[-2], tz)}")
        _add(root, "references", " ".join(refs))
    if alert.incident:
        _add(root, "incidents", _NOT_IN_ID.sub("_", alert.incident))
    zone = site.zones.get(alert.zone)
    for lang in LANGUAGES:
        _info(root, alert, site, zone, lang, sent_ts, tz)
    ET.indent(root, space="  ")
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)
    return xml


def _info(root: ET.Element, a: Alert, site: Site, zone: Zone | None, lang: str, sent: float, tz: ZoneInfo) -> None:
    w = _WORDS[lang]
    zh = lang == "zh-CN"
    resolved = a.state == "resolved"
    graded = a.level if a.level in _SEVERITY else Level.IV  # an open alert is graded; guard a NORMAL one anyway
    zone_name = (zone.name_zh if zh else zone.name_en) if zone else a.zone
    level_words = _level_zh(graded) if zh else graded.label
    site_name = site.info.name_zh if zh else site.info.name_en
    ev = {k: v for k, v in a.evidence.items() if math.isfinite(v)}

    info = ET.SubElement(root, _Q + "info")
    _add(info, "language", lang)
    _add(info, "category", "Safety")
    _add(info, "event", w["event_sensor" if a.cause == "sensor" else "event"])
    for response in ("AllClear",) if resolved else _RESPONSE[graded]:
        _add(info, "responseType", response)
    _add(info, "urgency", "Past" if resolved else _URGENCY[graded])
    _add(info, "severity", "Minor" if resolved else _SEVERITY[graded])
    certainty = "Observed" if resolved else _CERTAINTY[a.cause]
    if a.uncertain and certainty != "Possible" and not resolved:
        certainty = "Possible"
    _add(info, "certainty", certainty)
    eta = ev.get("eta_min_red", -1.0)
    if not resolved and a.cause == "forecast" and eta >= 0:
        _add(info, "onset", _cap_time(sent + eta * 60.0, tz))
    if resolved:
        _add(info, "expires", _cap_time(sent + CANCEL_VALID_S, tz))
    _add(info, "senderName", w["sender"].format(site=site_name))
    if resolved:
        _add(info, "headline", w["headline_clear"].format(zone=zone_name))
    else:
        _add(info, "headline", w["headline"].format(zone=zone_name, level=level_words, cause=_CAUSE[lang][a.cause]))

    _add(info, "description", _description(a, zone, zone_name, ev, lang))
    _add(info, "instruction", w["clear"] if resolved else _instruction(a, site, graded, lang))
    grid = a.grid or (zone.grid if zone else "")
    micro = a.micro_grid or (zone.micro_grid if zone else "")
    params = [
        ("level", a.level.label),
        ("peak_level", a.peak_level.label),
        ("colour", a.level.colour),
        ("cause", a.cause),
        ("state", a.state),
        ("zone", a.zone),
        ("grid", grid),
        ("micro_grid", micro),
        ("incident", a.incident or ""),
        ("uncertain", "true" if a.uncertain else ""),
    ]
    for name, value in params:
        if value:
            p = ET.SubElement(info, _Q + "parameter")
            _add(p, "valueName", name)
            _add(p, "value", value)
    area = ET.SubElement(info, _Q + "area")
    _add(area, "areaDesc", zone_name)
    if zone is not None:  # a zone dropped from the site file since: areaDesc still names it
        ring = polygon_wgs84(site, zone.id)
        _add(area, "polygon", " ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in ring))


def _description(a: Alert, zone: Zone | None, zone_name: str, ev: dict[str, float], lang: str) -> str:
    w = _WORDS[lang]
    zh = lang == "zh-CN"
    if a.state == "resolved":
        parts = [w["recovered"].format(zone=zone_name, level=_level_zh(a.peak_level) if zh else a.peak_level.label)]
    else:
        parts = [f"{zone_name}{'：' if zh else ': '}{_CAUSE[lang][a.cause]}{w['stop']}"]
    numbers = _numbers(ev, zone, zh)
    if numbers:
        text = w["sep"].join(numbers) + w["stop"]
        parts.append(text[0].upper() + text[1:])
    if a.state != "resolved":
        if a.message and not zh:
            parts.append(a.message)  # the detector's own sentence, written in English
        if a.uncertain:
            parts.append(w["uncertain"])
    return ("" if zh else " ").join(parts)


def _instruction(a: Alert, site: Site, level: Level, lang: str) -> str:
    """The alert's measures (or a generic line for its level), then where to send people."""
    w = _WORDS[lang]
    zh = lang == "zh-CN"
    steps = [m.strip().rstrip("。.；;") for m in a.measures if m.strip()] or [_ADVICE[lang][level]]
    if a.diversion:
        targets = []
        for d in a.diversion:
            dz = site.zones.get(d.zone)
            name = (dz.name_zh if zh else dz.name_en) if dz else d.name
            targets.append(w["room"].format(name=name, spare=d.spare))
        steps.append(w["divert"].format(targets=("、" if zh else ", ").join(targets)))
    return w["sep"].join(steps) + w["stop"]


def _numbers(ev: dict[str, float], zone: Zone | None, zh: bool) -> list[str]:
    """The evidence as short phrases, in the order an officer reads them."""
    out: list[str] = []
    occ = ev.get("occupancy")
    cap = ev.get("capacity") or (float(zone.capacity) if zone else None)
    share = ev.get("share")
    if share is None and occ is not None and cap:
        share = occ / cap
    if occ is not None and cap:
        out.append(
            f"在场约 {occ:,.0f} 人，容量 {cap:,.0f} 人（{share:.0%}）"
            if zh
            else f"about {occ:,.0f} people present of a capacity of {cap:,.0f} ({share:.0%})"
        )
    elif share is not None:
        out.append(f"已达容量的 {share:.0%}" if zh else f"at {share:.0%} of capacity")
    if (d := ev.get("density")) is not None:
        out.append(f"密度 {d:.1f} 人/平方米" if zh else f"density {d:.1f} people/m²")
    if (v := ev.get("inflow_per_min")) is not None:
        out.append(f"每分钟进入 {v:,.0f} 人" if zh else f"{v:,.0f} people/min coming in")
    if (v := ev.get("outflow_per_min")) is not None:
        out.append(f"每分钟离开 {v:,.0f} 人" if zh else f"{v:,.0f} people/min leaving")
    if (eta := ev.get("eta_min_red", -1.0)) >= 0:
        out.append(f"预计约 {eta:.0f} 分钟后达到I级红色" if zh else f"forecast to reach I red in about {eta:.0f} min")
    for minutes in (15, 30):
        if (f := ev.get(f"forecast_{minutes}")) is not None:
            out.append(f"{minutes} 分钟后预计 {f:,.0f} 人" if zh else f"forecast {f:,.0f} people in {minutes} min")
    if (bad := ev.get("bad_sensors")) is not None and (total := ev.get("sensors")) is not None:
        out.append(f"{bad:.0f}/{total:.0f} 个传感器异常" if zh else f"{bad:.0f} of {total:.0f} sensors faulty")
    return out


def _add(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, _Q + tag)
    el.text = _NOT_XML.sub("", text)  # ElementTree escapes & < >; characters XML forbids are dropped
    return el


def _level_zh(level: Level) -> str:
    return "正常" if level is Level.NORMAL else f"{level.name}级{_ZH_COLOUR[level]}"


def _timezone(site: Site) -> ZoneInfo:
    try:
        return ZoneInfo(site.info.timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(
            f"{site.path}: [site] timezone = {site.info.timezone!r} is not an IANA time zone name; "
            "use one such as 'Asia/Shanghai'"
        ) from e


def _cap_time(ts: float, tz: ZoneInfo) -> str:
    """CAP dateTime: local time with its offset, whole seconds, and UTC written -00:00 (CAP 1.2 forbids 'Z')."""
    text = dt.datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")
    return text[:-6] + "-00:00" if text.endswith("+00:00") else text
