"""Who may read and do what through the dashboard's API and push stream: the one table, and its checks.

Every route names the permission it needs (`dashboard.access.Access.require`); this module says which roles
hold it and, for the zone-scoped ones, on which zones. docs/api-security.md shows the same table.

Roles: the duty roster's four (alerts.model.Role: officer, grid_leader, command, operator) and two the
deployment configures with a token of their own: "wall" (a read-only display: the command-centre wall) and
"admin" (who runs the deployment: everything, including planned events and the district's emergency mode).

>>> from dashboard.auth import Principal
>>> wang = Principal(person="wang.li", name="Wang Li", role="officer", zones=frozenset({"seg-1"}))
>>> refusal(wang, "alert.act") is None, refusal(wang, "audit.read") is not None
(True, True)
>>> may_read_zone(wang, "seg-1"), may_read_zone(wang, "plaza")
(True, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dashboard.auth import Principal

DashboardRole = Literal["wall", "officer", "grid_leader", "operator", "command", "admin"]

Permission = Literal[
    "live.read",  # zones, district, alerts, history, emergency, the push stream (zone-scoped)
    "duty.read",  # silences, planned events, response metrics
    "report.read",  # the daily report (every zone of the district)
    "audit.read",  # the audit trail
    "deliveries.read",  # who was told about an alert, and how (zone-scoped)
    "alert.act",  # acknowledge, comment, resolve (zone-scoped)
    "silence.write",  # add and end silences (zone-scoped: the matchers must stay within the caller's zones)
    "event.write",  # register and end planned events (zone-scoped: a grid leader for their grids)
    "emergency.write",  # switch emergency mode (a grid leader for their own grid; the district: command, admin)
    "push.subscribe",  # keep one's own Web Push subscriptions
]

EVERYONE: frozenset[DashboardRole] = frozenset({"wall", "officer", "grid_leader", "operator", "command", "admin"})
PEOPLE: frozenset[DashboardRole] = EVERYONE - {"wall"}  # a person who can be held to account for an action

GRANTS: dict[Permission, frozenset[DashboardRole]] = {
    "live.read": EVERYONE,
    "duty.read": EVERYONE - {"officer"},
    "report.read": frozenset({"wall", "operator", "command", "admin"}),
    "audit.read": frozenset({"operator", "command", "admin"}),
    "deliveries.read": PEOPLE,
    "alert.act": PEOPLE,
    "silence.write": PEOPLE,
    "event.write": frozenset({"grid_leader", "command", "admin"}),
    "emergency.write": frozenset({"grid_leader", "command", "admin"}),
    "push.subscribe": PEOPLE,
}

WRITES: frozenset[Permission] = frozenset(
    {"alert.act", "silence.write", "event.write", "emergency.write", "push.subscribe"}
)
"""Permissions that change something: their calls are rate-limited per principal (dashboard/limits.py)."""

ALL_ZONES_ROLES: frozenset[DashboardRole] = frozenset({"wall", "operator", "command", "admin"})
"""Roles that read (and, where their permissions allow, act) on every zone whatever the roster lists."""

DISTRICT_EMERGENCY: frozenset[DashboardRole] = frozenset({"command", "admin"})

_WHAT: dict[Permission, str] = {
    "live.read": "read the live state",
    "duty.read": "read silences, planned events and response metrics",
    "report.read": "read the district's daily report",
    "audit.read": "read the audit trail",
    "deliveries.read": "read who was told about an alert",
    "alert.act": "acknowledge, comment on or resolve alerts",
    "silence.write": "add or end silences",
    "event.write": "register or end planned events",
    "emergency.write": "switch emergency mode",
    "push.subscribe": "subscribe to Web Push",
}
_ASK: dict[Permission, str] = {
    "duty.read": "ask your grid leader or the command centre",
    "report.read": "ask the command centre for the report",
    "audit.read": "ask the command centre or the administrator",
    "event.write": "ask the grid leader or the command centre",
    "emergency.write": "ask the command centre",
}


def role_words(role: str) -> str:
    """'grid_leader' -> 'grid leader'."""
    return role.replace("_", " ")


def who(principal: Principal) -> str:
    return f"{role_words(principal.role)} {principal.person}"


def refusal(principal: Principal, permission: Permission) -> str | None:
    """None if the principal's role holds `permission`; otherwise the 403 reason, saying whom to ask."""
    if principal.role in GRANTS[permission]:
        return None
    if principal.role == "wall":
        ask = "the wall's token is read-only: sign in with your own token to act"
    else:
        ask = _ASK.get(permission, "ask the command centre")
    return f"{who(principal)} may not {_WHAT[permission]}: {ask}"


def all_zones(principal: Principal) -> bool:
    """True if the principal reads every zone (wall, operator, command, admin, or a roster entry with no zones)."""
    return principal.role in ALL_ZONES_ROLES or principal.zones is None


def may_read_zone(principal: Principal, zone_id: str) -> bool:
    """True if the principal may see `zone_id`'s state and alerts: their duty zones (or their grids' zones)."""
    return all_zones(principal) or zone_id in (principal.zones or frozenset())


def may_act_on(principal: Principal, zone_id: str) -> bool:
    """True if the principal may act (acknowledge, silence, ...) on `zone_id`; the role check comes first."""
    return principal.role != "wall" and may_read_zone(principal, zone_id)
