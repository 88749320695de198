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
        "grid": zone.grid if zone else None,
        "micro_grid": zone.micro_grid if zone else None,
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
        "history": [
            {
                "at": _iso(c.ts, tz),
                "ts": c.ts,
                "state": c.state,
                "level": c.level.label,
                "severity": int(c.level),
                "note": c.note,
                "by": c.by,
            }
            for c in alert.history
        ],
    }


def alert_mqtt_payload(alert: Alert, site: Site) -> bytes:
    """UTF-8 JSON for crowdflow/alerts/<zone> (retained: each zone's current alert)."""
    return _encoder.encode(alert_json(alert, site))
