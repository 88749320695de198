"""Alerts as the API, the push stream and the MQTT alert topic show them: names, colours, local ISO times.

Each time is given twice: `*_at` as ISO 8601 in the site's timezone (what a person reads) and `*_ts` as
epoch seconds (what a program sorts by).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from domain.levels import Level
from domain.site import Site
from domain.values import Alert

_encoder = msgspec.json.Encoder()


def _iso(ts: float | None, tz: ZoneInfo) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def _level(lv: Level) -> dict[str, Any]:
    return {
        "severity": int(lv),
        "name": lv.name,
        "label": lv.label,
        "colour": lv.colour,
        "colour_name": lv.colour_name,
    }


def alert_json(alert: Alert, site: Site) -> dict[str, Any]:
    """A JSON-able dict of the alert with everything a wall or an officer's phone needs to show it."""
    tz = ZoneInfo(site.info.timezone)
    zone = site.zones.get(alert.zone)
    return {
        "id": alert.id,
        "zone": alert.zone,
        # A zone dropped from the site file since the alert was raised still shows, by its id.
        "zone_name": zone.name_en if zone else alert.zone,
        "zone_name_zh": zone.name_zh if zone else alert.zone,
        "zone_kind": zone.kind if zone else None,
        "grid": zone.grid if zone else (alert.grid or None),
        "micro_grid": zone.micro_grid if zone else (alert.micro_grid or None),
        "level": _level(alert.level),
        "peak_level": _level(alert.peak_level),
        "cause": alert.cause,
        "state": alert.state,
        "open": alert.open,
        "opened_at": _iso(alert.opened_at, tz),
        "updated_at": _iso(alert.updated_at, tz),
        "resolved_at": _iso(alert.resolved_at, tz),
        "opened_ts": alert.opened_at,
        "updated_ts": alert.updated_at,
        "resolved_ts": alert.resolved_at,
        "evidence": dict(alert.evidence),
        "message": alert.message,
        "signals": {cause: _level(Level(lv))["label"] for cause, lv in alert.signals.items()},
        "measures": list(alert.measures),
        "diversion": [msgspec.to_builtins(d) for d in alert.diversion],
        "acknowledged_at": _iso(alert.acknowledged_at, tz),
        "acknowledged_ts": alert.acknowledged_at,
        "acknowledged_by": alert.acknowledged_by,
        "ack_comment": alert.ack_comment,
        "escalated_at": _iso(alert.escalated_at, tz),
        "resolved_by": alert.resolved_by,
        "resolve_comment": alert.resolve_comment,
        "uncertain": alert.uncertain,
        "uncertain_reason": alert.uncertain_reason,
        "inhibited_by": alert.inhibited_by,
        "silenced_by": alert.silenced_by,
        "incident": alert.incident,
        "history": [
            {
                "at": _iso(c.ts, tz),
                "ts": c.ts,
                "state": c.state,
                "level": c.level.label,
                "severity": int(c.level),
                "note": c.note,
                "by": c.by,
                "action": c.action,
            }
            for c in alert.history
        ],
    }


def alert_mqtt_payload(alert: Alert, site: Site) -> bytes:
    """UTF-8 JSON for crowdflow/alerts/<zone> (retained: each zone's current alert)."""
    return _encoder.encode(alert_json(alert, site))
