"""Who is calling the API: bearer tokens to principals, and who may act on which zone.

A token reaches the app only in the `Authorization: Bearer <token>` header, never as a query parameter:
URLs end up in access logs, browser history and proxies (DESIGN.md §5). Tokens are compared in constant time.

An `Authenticator` maps a token to a `Principal`, or None for a token it does not know. `from_directory` makes
one from the duty roster (alerts.routing.Router: token hashes and each person's zones); `operator_token` is
the single-token fallback for a deployment without a roster; `first_of` tries several in order.

>>> wang = Principal(person="wang.li", name="Wang Li", role="officer", zones=frozenset({"seg-1"}))
>>> wang.can_act("seg-1"), wang.can_act("plaza")
(True, False)
>>> auth = first_of(token_table({"t-wang": wang}), operator_token("t-ops"))
>>> auth("t-wang") == wang, auth("t-ops").role, auth("nope")
(True, 'operator', None)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Protocol

import msgspec
from fastapi import HTTPException

from alerts.model import Role
from dashboard.policy import ALL_ZONES_ROLES, DashboardRole, may_act_on, role_words
from domain.site import Site

OPERATOR = "operator"
WALL = "wall"
ADMIN = "admin"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A person (or the wall display) using the API. `zones` None means every zone.

    For a grid leader, `zones` is every zone of their grids; for an officer, the zones of their duties.
    What each role may read and do is dashboard/policy.py's table.
    """

    person: str  # roster id, recorded as `by` in the audit trail
    name: str
    role: DashboardRole
    zones: frozenset[str] | None = None

    def can_act(self, zone_id: str) -> bool:
        """True if this person may acknowledge, comment on, resolve or silence alerts of `zone_id`."""
        return may_act_on(self, zone_id)

    def as_json(self) -> dict[str, object]:
        """As /api/me shows it: zones sorted, or null for all."""
        return {
            "person": self.person,
            "name": self.name,
            "role": self.role,
            "zones": None if self.zones is None or self.role in ALL_ZONES_ROLES else sorted(self.zones),
        }


Authenticator = Callable[[str], Principal | None]
"""Token -> the principal it belongs to, or None for an unknown token. Must not raise for a bad token."""


def _digest(token: str) -> bytes:
    # Comparing fixed-length digests keeps the compare constant-time also across token lengths.
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_table(tokens: Mapping[str, Principal]) -> Authenticator:
    """An authenticator over a fixed token -> principal table (e.g. built from the duty roster).

    Every entry is compared, so the time taken does not tell how many tokens or which one nearly matched.
    """
    table = [(_digest(token), principal) for token, principal in tokens.items() if token]

    def authenticate(token: str) -> Principal | None:
        given = _digest(token)
        found: Principal | None = None
        for digest, principal in table:
            if hmac.compare_digest(given, digest) and found is None:
                found = principal
        return found

    return authenticate


class Person(Protocol):
    """A roster entry as the directory returns it (alerts.roster.Person)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> Role: ...


class Directory(Protocol):
    """Who a token belongs to and where they may act: alerts.routing.Router fits."""

    def authenticate(self, token: str) -> Person | None: ...
    def zones_of(self, person_id: str) -> frozenset[str] | None: ...


def from_directory(directory: Directory) -> Authenticator:
    """An authenticator over the duty roster: the person with that token, with the zones of all their duties.

    The directory compares token hashes in constant time itself. Zones are those of every duty, on shift or
    not: an officer who stays on to finish an incident can still acknowledge it.
    """

    def authenticate(token: str) -> Principal | None:
        person = directory.authenticate(token)
        if person is None:
            return None
        zones = directory.zones_of(person.id)
        return Principal(person=person.id, name=person.name, role=person.role,
                         zones=None if zones is None else frozenset(zones))  # fmt: skip

    return authenticate


def operator_token(token: str) -> Authenticator:
    """The single operator token of a deployment without a roster: acts on every zone, audited as 'operator'."""
    if not token:
        raise ValueError("an empty api_token would let anybody in: set dashboard.api_token or leave it unset")
    return token_table({token: Principal(person=OPERATOR, name=OPERATOR, role="operator", zones=None)})


def wall_tokens(tokens: list[str] | tuple[str, ...]) -> Authenticator:
    """Read-only display tokens (the command-centre wall): every zone, no action (see dashboard/policy.py)."""
    if any(not t for t in tokens):
        raise ValueError("an empty wall token would let anybody read the wall: remove it from dashboard.wall_tokens")
    wall = Principal(person=WALL, name="wall display", role="wall", zones=None)
    return token_table(dict.fromkeys(tokens, wall))


def admin_token(token: str) -> Authenticator:
    """The deployment administrator's token: every permission on every zone, audited as 'admin'."""
    if not token:
        raise ValueError("an empty admin_token would let anybody in: set dashboard.admin_token or leave it unset")
    return token_table({token: Principal(person=ADMIN, name="administrator", role="admin", zones=None)})


def first_of(*authenticators: Authenticator | None) -> Authenticator:
    """Try each configured authenticator in turn; the first that knows the token wins."""
    chain = [a for a in authenticators if a is not None]

    def authenticate(token: str) -> Principal | None:
        for a in chain:
            principal = a(token)
            if principal is not None:
                return principal
        return None

    return authenticate


def not_on_duty(principal: Principal, zone_id: str, site: Site | None = None) -> HTTPException:
    """403 for a person acting on a zone that is not theirs, saying who may act instead."""
    zone = site.zones.get(zone_id) if site is not None else None
    what = "segment" if zone is not None and zone.segment is not None else "zone"
    return HTTPException(
        403,
        f"{role_words(principal.role)} {principal.person} is not on duty for {zone_id}; "
        f"ask the command centre or the {what}'s officer",
    )


def grids_led(principal: Principal, site: Site) -> frozenset[str]:
    """Grids this person may act for as a whole: every zone of the grid is theirs (all grids for command)."""
    out = set()
    for grid in site.grids:
        zones = [z.id for z in site.zones.values() if z.grid == grid]
        if zones and all(principal.can_act(z) for z in zones):
            out.add(grid)
    return frozenset(out)
