"""JSON views of the site, zone states, the district and alerts: the one shape REST and the push stream share.

Pure functions of their inputs, so the REST answer for a zone and the zone in a delta never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.levels import GRADED, Level
from domain.site import Site, Zone
from domain.values import DistrictState, ZoneState

NO_DATA_COLOUR = "#757575"  # grey: a zone without state is unknown, never shown as calm green
UNKNOWN_LABEL = "unknown"
NO_DATA_LABEL = "no data"
ALERT_STATES = frozenset({"raised", "escalated", "acknowledged", "resolved"})

JSON = dict[str, Any]


def level_table() -> list[JSON]:
    """Levels with label and colour, so the page takes its colours from domain/levels.py only."""
    return [{"level": int(lv), "name": lv.name, "label": lv.label, "colour": lv.colour} for lv in Level]


def zone_view(zone: Zone, state: ZoneState | None) -> JSON:
    """A zone as the wall and /api/zones show it. Floats are rounded: the page shows whole people and
    percentages, and rounding keeps sub-display jitter from counting as a change."""
    base: JSON = {
        "id": zone.id,
        "name_zh": zone.name_zh,
        "name_en": zone.name_en,
        "kind": zone.kind,
        "grid": zone.grid,
        "micro_grid": zone.micro_grid,
        "segment": zone.segment,
        "hotspot": zone.hotspot,
    }
    if state is None:
        base.update(
            occupancy=None, capacity=zone.capacity, share=None, density=None, inflow_per_min=None,
            outflow_per_min=None, arrivals_today=None, level=int(Level.NORMAL), level_label=NO_DATA_LABEL,
            colour=NO_DATA_COLOUR, healthy=False, ts=None, forecast="", eta_red_min=None,
            expected_inflow_per_min=None, outlook=[], sensor_issues={},
        )  # fmt: skip
        return base
    level = Level(state.level)
    label, colour = level.label, level.colour
    if not state.healthy and level is Level.NORMAL:
        # Blind is not calm: a zone whose sensors are silent or faulty must not look green on the wall.
        label, colour = UNKNOWN_LABEL, NO_DATA_COLOUR
    base.update(
        occupancy=round(state.occupancy, 1),
        capacity=state.capacity,
        share=round(state.share, 4),
        density=round(state.density, 3),
        inflow_per_min=round(state.inflow_per_min, 1),
        outflow_per_min=round(state.outflow_per_min, 1),
        arrivals_today=state.arrivals_today,
        level=int(level),
        level_label=label,
        colour=colour,
        healthy=state.healthy,
        ts=state.ts,
        forecast=state.forecast,
        # Whole minutes: the wall says "red in about 12 min"; finer would count as a change every tick.
        eta_red_min=None if state.eta_red_min is None else round(state.eta_red_min),
        expected_inflow_per_min=(
            None if state.expected_inflow_per_min is None else round(state.expected_inflow_per_min, 1)
        ),
        # Whole people, as the page shows them: [horizon_min, occupancy, low90, high90].
        outlook=[[int(h), round(occ), round(lo), round(hi)] for h, occ, lo, hi in state.outlook],
        sensor_issues=dict(state.sensor_issues),
    )
    return base


def site_view(site: Site) -> JSON:
    """The static part the page lays itself out from; sent once per snapshot, never in deltas."""
    info = site.info
    return {
        "id": info.id,
        "name_zh": info.name_zh,
        "name_en": info.name_en,
        "timezone": info.timezone,
        "peak_day_visits": info.peak_day_visits,
        "grids": [
            {"id": g.id, "name_zh": g.name_zh, "name_en": g.name_en, "kind": g.kind}
            for g in site.grids.values()
        ],
        "zones": [
            {
                "id": z.id,
                "name_zh": z.name_zh,
                "name_en": z.name_en,
                "kind": z.kind,
                "grid": z.grid,
                "micro_grid": z.micro_grid,
                "capacity": z.capacity,
                "area_m2": z.area_m2,
                "polygon": [list(p) for p in z.polygon],
                "segment": z.segment,
                "hotspot": z.hotspot,
                # The share of capacity at which each graded level starts (the site file's; a planned
                # event's stricter ones are not here), so charts draw level lines without guessing.
                "thresholds": [
                    {"level": int(lv), "share": site.thresholds_for(z).share_for(lv)} for lv in GRADED
                ],
            }
            for z in site.zones.values()
        ],
        "riverside": [z.id for z in site.riverside()],
        "levels": level_table(),
    }


def district_view(d: DistrictState) -> JSON:
    """District headline numbers, with the two ratios the wall shows precomputed."""
    vs_profile = (
        d.arrivals_today / d.expected_arrivals_so_far * 100 if d.expected_arrivals_so_far > 0 else None
    )
    vs_peak = d.arrivals_today / d.peak_day_visits * 100 if d.peak_day_visits > 0 else None
    return {
        "ts": d.ts,
        "people_now": round(d.people_now),
        "arrivals_today": d.arrivals_today,
        "expected_arrivals_so_far": round(d.expected_arrivals_so_far),
        "peak_day_visits": d.peak_day_visits,
        "arrivals_vs_profile_pct": None if vs_profile is None else round(vs_profile, 1),
        "arrivals_vs_peak_day_pct": None if vs_peak is None else round(vs_peak, 1),
        "zones_by_level": dict(d.zones_by_level),
    }


class AlertRejected(ValueError):
    """An alert dict the hub cannot show; the message is the counted reason."""


def alert_view(raw: Mapping[str, Any], site: Site) -> JSON:
    """Check an encoded alert and normalise what the page needs to read it.

    Accepts alerts/encode.alert_json's shape (level as {"severity": n, ...}, times as *_ts epoch seconds)
    or a flat one (level as an int or "II orange"). Output: the input's keys plus level (int), level_name,
    level_label, colour, zone_name_zh/zone_name_en and open. A zone no longer in the site file still shows,
    by its id. Raises AlertRejected with a short reason for a dict without id, zone, level or state.
    """
    alert_id = raw.get("id")
    if not isinstance(alert_id, str) or not alert_id:
        raise AlertRejected("alert without a string id")
    zone_id = raw.get("zone")
    if not isinstance(zone_id, str) or not zone_id:
        raise AlertRejected("alert without a zone")
    state = raw.get("state")
    if state not in ALERT_STATES:
        raise AlertRejected("alert with an unknown state")
    try:
        level = _level_of(raw.get("level"))
    except ValueError:
        raise AlertRejected("alert with an unknown level") from None
    zone = site.zones.get(zone_id)
    out = dict(raw)
    out.update(
        level=int(level),
        level_name=level.name,
        level_label=level.label,
        colour=level.colour,
        zone_name_zh=zone.name_zh if zone else str(raw.get("zone_name_zh") or zone_id),
        zone_name_en=zone.name_en if zone else str(raw.get("zone_name") or zone_id),
        open=state != "resolved",
    )
    return out


def _level_of(value: object) -> Level:
    if isinstance(value, Mapping):  # alerts/encode.py: {"severity": 3, "label": "II orange", ...}
        value = value.get("severity")
    if isinstance(value, bool):  # bool is an int subclass; True is not a level
        raise ValueError(value)
    if isinstance(value, int):
        return Level(value)
    if isinstance(value, str):
        return Level.parse(value)
    raise ValueError(value)


def alert_time(a: Mapping[str, Any]) -> float:
    """Epoch seconds of the alert's last change: *_ts (alerts/encode.py) or numeric *_at."""
    for key in ("updated_ts", "opened_ts", "updated_at", "opened_at"):
        v = a.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return 0.0


def alert_order(a: Mapping[str, Any]) -> tuple[int, int, float]:
    """Sort key: open before resolved, then most severe, then newest."""
    return (0 if a.get("open") else 1, -int(a.get("level", 0)), -alert_time(a))
