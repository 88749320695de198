"""Group adjacent riverside segments alerting together into incidents: one situation, one notification stream.

The riverside is managed segment by segment (分段管控). When a crowd builds along the promenade, several
neighbouring segments cross their thresholds within minutes of each other; an officer needs one message
"S03-S05 at II orange", not one per segment. An incident is a connected run of riverside segments (neighbours
in the site, both of kind "riverside_segment") whose open alerts are all at `min_level` or worse. A lone
segment is not an incident: its own alert already says everything.

Why `min_level` defaults to III yellow: two adjacent segments at IV blue are a busy evening on the Bund, not a
situation anyone has to coordinate; grouping them would create an incident (and a notification) for every
ordinary Saturday. From III yellow on, measures start (one-way flow, holding people back), and they only
work when neighbouring segments act together.

Incident ids are stable across calls, so dedup and escalation can track one key while the incident changes
shape (see `group_incidents`). The function is pure: alerts, site and the previous incidents in, incidents out;
the caller resolves the previous incidents that are no longer returned.

>>> from domain.loader import load_site
>>> from domain.values import Alert
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> def alert(i: str, zone: str, level: Level, t: float) -> Alert:
...     return Alert(id=i, zone=zone, level=level, peak_level=level, cause="capacity", state="raised",
...                  opened_at=t, updated_at=t)
>>> inc = group_incidents([alert("a2", "seg-2", Level.II, 20.0), alert("a1", "seg-1", Level.III, 10.0)],
...                       site, {}, now=30.0)
>>> [(i.id, i.zones, i.level.label, i.opened_at) for i in inc.values()]
[('inc-a1', ['seg-1', 'seg-2'], 'II orange', 10.0)]
>>> incident_of(inc)
{'a1': 'inc-a1', 'a2': 'inc-a1'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alerts.model import Incident
from domain.levels import Level
from domain.site import Site, Zone
from domain.values import Alert


def group_incidents(
    open_alerts: Sequence[Alert],
    site: Site,
    previous: Mapping[str, Incident],
    now: float,
    *,
    min_level: Level = Level.III,
) -> dict[str, Incident]:
    """The current incidents, keyed by id, in river order of their first segment.

    - Members: open alerts at `min_level` or worse in riverside segments of `site`; resolved alerts, alerts in
      zones the site does not have and alerts in other zone kinds are left out.
    - Incidents: connected runs of two or more member segments (neighbours in the site, either direction).
    - Ids: an incident keeps the id of a previous incident (from `previous`, resolved ones ignored) while any of
      that incident's member alerts is still in it. Previous incidents claim in age order (opened_at, then id),
      so when two merge, the older one's id wins; when one splits, it keeps its id in the part holding its
      oldest remaining member alert (opened_at, then id) and the other part gets a new id. A new id is
      "inc-" + the oldest member alert's id, with "-2", "-3", ... added if that id is taken by a previous
      incident or another current one, so a resolved incident's id is never continued by a different one.
    - zones and alert_ids in river order; level the worst member's; opened_at the earliest member's;
      updated_at `now` when members or level changed (or the incident is new), else the previous value.

    Incidents missing from the result have ended: the caller resolves them.
    """
    members = _members(open_alerts, site, min_level)
    components = _components(members, site)
    claimed = _claim(components, previous, members)
    taken = set(previous) | set(claimed.values())
    out: dict[str, Incident] = {}
    for idx, zones in enumerate(components):
        alerts = [members[z] for z in zones]
        inc_id = claimed.get(idx)
        if inc_id is None:
            first = min(alerts, key=_age)
            inc_id = _fresh_id(f"inc-{first.id}", taken)
            taken.add(inc_id)
        out[inc_id] = _incident(inc_id, zones, alerts, previous.get(inc_id), now)
    return out


def incident_of(incidents: Mapping[str, Incident]) -> dict[str, str]:
    """alert id -> id of the incident it belongs to (alerts in no incident are absent)."""
    return {alert_id: inc.id for inc in incidents.values() for alert_id in inc.alert_ids}


def _members(open_alerts: Sequence[Alert], site: Site, min_level: Level) -> dict[str, Alert]:
    """zone id -> the alert representing it. At most one alert is open per zone; if a caller passes two, the
    worse (then older, then lower id) represents the zone, so the result never depends on input order."""
    out: dict[str, Alert] = {}
    for a in open_alerts:
        zone = site.zones.get(a.zone)
        if not a.open or a.level < min_level or zone is None or zone.kind != "riverside_segment":
            continue
        cur = out.get(a.zone)
        if cur is None or (-a.level, *_age(a)) < (-cur.level, *_age(cur)):
            out[a.zone] = a
    return out


def _age(a: Alert) -> tuple[float, str]:
    return (a.opened_at, a.id)


def _river_key(zone: Zone) -> tuple[int, str]:
    return (zone.segment or 0, zone.id)


def _adjacent(a: Zone, b: Zone) -> bool:
    # Site files list neighbours both ways, but one missing direction must not split an incident.
    return b.id in a.neighbours or a.id in b.neighbours


def _components(members: Mapping[str, Alert], site: Site) -> list[list[str]]:
    """Connected runs of member zones with two or more zones, each in river order, ordered by first zone."""
    zones = sorted((site.zones[z] for z in members), key=_river_key)
    seen: set[str] = set()
    out: list[list[str]] = []
    for start in zones:
        if start.id in seen:
            continue
        seen.add(start.id)
        comp, stack = [start], [start]
        while stack:
            cur = stack.pop()
            for other in zones:
                if other.id not in seen and _adjacent(cur, other):
                    seen.add(other.id)
                    comp.append(other)
                    stack.append(other)
        if len(comp) >= 2:
            out.append([z.id for z in sorted(comp, key=_river_key)])
    return out


def _claim(
    components: list[list[str]], previous: Mapping[str, Incident], members: Mapping[str, Alert]
) -> dict[int, str]:
    """component index -> the previous incident id it continues."""
    where: dict[str, int] = {}  # alert id -> component index
    alerts: dict[str, Alert] = {}
    for idx, zones in enumerate(components):
        for z in zones:
            where[members[z].id] = idx
            alerts[members[z].id] = members[z]
    claimed: dict[int, str] = {}
    live = sorted((p for p in previous.values() if p.resolved_at is None), key=lambda p: (p.opened_at, p.id))
    for prev in live:
        # This incident's members still in some incident, oldest first: the part holding the oldest one that
        # no older incident has taken continues it.
        remaining = sorted((alerts[i] for i in prev.alert_ids if i in where), key=_age)
        for a in remaining:
            idx = where[a.id]
            if idx not in claimed:
                claimed[idx] = prev.id
                break
    return claimed


def _fresh_id(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _incident(inc_id: str, zones: list[str], alerts: list[Alert], prev: Incident | None, now: float) -> Incident:
    alert_ids = [a.id for a in alerts]  # alerts follow `zones`, already in river order
    level = max(a.level for a in alerts)
    unchanged = prev is not None and prev.alert_ids == alert_ids and prev.zones == zones and prev.level == level
    return Incident(
        id=inc_id,
        alert_ids=alert_ids,
        zones=list(zones),
        level=level,
        opened_at=min(a.opened_at for a in alerts),
        updated_at=prev.updated_at if unchanged and prev is not None else now,
    )
