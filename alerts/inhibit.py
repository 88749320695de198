"""Inhibition and uncertainty: which alerts follow from a worse one, and which stand on doubtful numbers.

When a zone fills up, people back up into the zones around it: the neighbours' stall, counter-flow, forecast
and surge alerts are consequences of the full zone, and the officer acting on the full zone is acting on
them too. Those neighbour alerts stay on the wall, marked "inhibited by" the full zone's alert, but are not
pushed (dedup reads `Alert.inhibited_by`). Only lower-level alerts are inhibited: a neighbour that is worse
than the full zone is a situation of its own.

Chains: an alert that some rule would inhibit is never a source itself. With rules A→B and B→C, B is
inhibited by A and C is not inhibited at all. This errs on the side of showing: a muted alert never mutes
another, two alerts can never mute each other, and the answer does not depend on the order alerts are looked
at. (The default rules have no chains: capacity and density alerts are sources only.)

A sensor-health alert does not hide anything: `uncertainty` marks the zone's other alert as standing on
numbers that may be wrong, and says how bad the sensor problem is.

>>> from domain.loader import load_site
>>> from domain.values import Alert
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> full = Alert(id="a1", zone="seg-1", level=Level.II, peak_level=Level.II, cause="capacity", state="raised",
...              opened_at=0.0, updated_at=0.0)
>>> stall = Alert(id="a2", zone="seg-2", level=Level.III, peak_level=Level.III, cause="stall", state="raised",
...               opened_at=5.0, updated_at=5.0)
>>> inhibitions([full, stall], site)
{'a2': 'a1'}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import msgspec

from domain.levels import Level
from domain.site import Site, Zone
from domain.values import Alert, Cause

CAUSES: tuple[str, ...] = get_args(Cause)


class InhibitRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An open alert with a source cause inhibits open alerts with a target cause in its neighbouring zones
    (and, with `only_lower`, only those at a lower level)."""

    source_causes: tuple[Cause, ...]
    target_causes: tuple[Cause, ...]
    scope: Literal["neighbours"] = "neighbours"  # at most one alert is open per zone, so neighbours is the scope
    only_lower: bool = True

    def __post_init__(self) -> None:
        for field in ("source_causes", "target_causes"):
            causes: tuple[str, ...] = getattr(self, field)
            if not causes:
                raise ValueError(f"InhibitRule.{field} is empty: list at least one of {', '.join(CAUSES)}")
            bad = [c for c in causes if c not in CAUSES]
            if bad:
                raise ValueError(f"InhibitRule.{field} has unknown cause(s) {bad}: use any of {', '.join(CAUSES)}")


DEFAULT_RULES: tuple[InhibitRule, ...] = (
    # A full zone (capacity or density) explains the backing-up around it.
    InhibitRule(source_causes=("capacity", "density"), target_causes=("stall", "counterflow", "forecast", "surge")),
)


def inhibitions(
    open_alerts: Sequence[Alert], site: Site, rules: Sequence[InhibitRule] = DEFAULT_RULES
) -> dict[str, str]:
    """target alert id -> id of the alert inhibiting it, for the open alerts that are inhibited (by target id).

    When several alerts could inhibit a target, the worst one is named (highest level, then opened first,
    then lowest id). An alert never inhibits itself, and an alert that some rule would inhibit is never a
    source (see the module docstring). Resolved alerts and alerts in zones the site does not have take no part.
    """
    alerts = sorted((a for a in open_alerts if a.open and a.zone in site.zones), key=lambda a: a.id)
    could: dict[str, list[Alert]] = {}  # target id -> alerts that some rule lets inhibit it
    for target in alerts:
        for source in alerts:
            if source.id != target.id and any(_applies(r, source, target, site) for r in rules):
                could.setdefault(target.id, []).append(source)
    out: dict[str, str] = {}
    for target_id, sources in could.items():
        free = [s for s in sources if s.id not in could]
        if free:
            out[target_id] = min(free, key=lambda s: (-s.level, s.opened_at, s.id)).id
    return out


def uncertainty(alert: Alert) -> tuple[bool, str]:
    """(True, why) when a sensor-health signal at IV blue or worse is active in the alert's zone and the alert
    itself is not the sensor-health one: its numbers may be wrong. (False, "") otherwise.

    >>> a = Alert(id="a1", zone="seg-1", level=Level.II, peak_level=Level.II, cause="capacity", state="raised",
    ...           opened_at=0.0, updated_at=0.0, signals={"capacity": 3, "sensor": 2})
    >>> flag, why = uncertainty(a)
    >>> flag, why.split(":")[0]
    (True, 'Sensor health in seg-1 is at III yellow')
    """
    raw = alert.signals.get("sensor", 0)
    if alert.cause == "sensor" or raw < Level.IV:
        return False, ""
    level = Level(min(raw, Level.I))  # a grade beyond I red from a newer detector still reads as the worst
    return True, (
        f"Sensor health in {alert.zone} is at {level.label}: the numbers behind this {alert.level.label} "
        f"{alert.cause} alert may be wrong; check by camera or on the ground."
    )


def _applies(rule: InhibitRule, source: Alert, target: Alert, site: Site) -> bool:
    if source.cause not in rule.source_causes or target.cause not in rule.target_causes:
        return False
    if rule.only_lower and target.level >= source.level:
        return False
    return _adjacent(site.zones[source.zone], site.zones[target.zone])


def _adjacent(a: Zone, b: Zone) -> bool:
    return a.id != b.id and (b.id in a.neighbours or a.id in b.neighbours)
