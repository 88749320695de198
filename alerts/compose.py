"""The words of a notification: a title that fits a phone's lock screen and a body an officer can act on.

Title: level first (number and colour word), then where: "I red · 滨江步道3段 Riverside S03 (+2 segments)".
Body, in the order an officer needs it: what is happening (the detector's message), the numbers, the forecast,
what to do (top measures), where to send people (diversion), caveats (uncertain numbers), how to acknowledge.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerts.model import NotificationKind
from domain.levels import Level
from domain.site import Site
from domain.values import Alert

_KIND_WORD: dict[NotificationKind, str] = {
    "raised": "NEW",
    "level_up": "WORSE",
    "level_down": "EASING",
    "member_added": "SPREADING",
    "escalated": "NO ANSWER — ESCALATED",
    "reminder": "REMINDER",
    "reraised": "STILL OPEN — RE-RAISED",
    "resolved": "RESOLVED",
}
MAX_MEASURES = 4


def _zone_name(site: Site, zone_id: str) -> str:
    z = site.zones.get(zone_id)
    return f"{z.name_zh} {z.name_en}" if z else zone_id


def title(site: Site, kind: NotificationKind, level: Level, zones: Sequence[str]) -> str:
    where = _zone_name(site, zones[0]) if zones else "?"
    if len(zones) > 1:
        where += f" (+{len(zones) - 1} adjacent)"
    shown = "resolved" if kind == "resolved" else level.label
    return f"{shown} · {where} · {_KIND_WORD[kind]}"


def body(
    site: Site,
    kind: NotificationKind,
    alerts: Sequence[Alert],
    *,
    reason: str,
    step: int,
    url: str = "",
) -> str:
    """Plain text (channels that render Markdown show it fine too)."""
    worst = max(alerts, key=lambda a: (a.level, a.peak_level))
    lines: list[str] = []
    if len(alerts) > 1:
        names = ", ".join(_zone_name(site, a.zone) for a in alerts)
        lines.append(f"Incident across {len(alerts)} adjacent segments: {names}.")
    for a in alerts:
        if kind == "resolved":
            lines.append(f"{_zone_name(site, a.zone)}: back to normal (peak {a.peak_level.label}).")
            continue
        lines.append(f"{_zone_name(site, a.zone)} — {a.level.label} ({a.cause}): {a.message}".rstrip(": "))
        ev = a.evidence
        if "occupancy" in ev and "capacity" in ev and ev["capacity"] > 0:
            lines.append(
                f"  {ev['occupancy']:,.0f} people of {ev['capacity']:,.0f} ({ev['occupancy'] / ev['capacity']:.0%})"
                + (f", {ev['density']:.1f}/m²" if "density" in ev else "")
                + (f", inflow {ev['inflow_per_min']:,.0f}/min" if "inflow_per_min" in ev else "")
            )
        if a.uncertain:
            lines.append(f"  ⚠ numbers uncertain: {a.uncertain_reason}")
    if kind != "resolved":
        if worst.measures:
            lines.append("Do now:")
            lines += [f"  {i}. {m}" for i, m in enumerate(worst.measures[:MAX_MEASURES], 1)]
        if worst.diversion:
            lines.append(
                "Divert to: "
                + ", ".join(f"{d.name} (room for {d.spare:,}, {d.share:.0%} full)" for d in worst.diversion)
            )
        if step > 0:
            lines.append(f"Escalation step {step}: the responsible officers have not acknowledged.")
        lines.append(f"Acknowledge: {url}" if url else "Acknowledge on the officer page or the command wall.")
    lines.append(f"Why you get this: {reason}")
    return "\n".join(lines)
