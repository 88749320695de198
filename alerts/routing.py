"""Who is told about a zone, and who may act on it: the roster read at a given moment.

`Router.recipients(zone, step, now)` answers "who gets escalation step `step` for this zone right now":

- "responsible": the on-shift officers whose duty covers the zone, the most specific duty winning (a duty
  naming the zone beats one naming its micro-grid, which beats one naming its grid);
- "grid_leader": the on-shift grid leaders of the zone's grid;
- "command": everyone on shift with the command or operator role.

When a step's target has nobody on shift, the next wider target is told instead (responsible -> grid leader
-> command), and when even command is empty, the narrower ones (grid leader, then responsible): an alert is
only routed to nobody when no one at all on shift covers the zone. A Recipient's `role` tells the caller
who was actually chosen. Times are epoch seconds, read in the site's timezone.

Channels are the roster's, plus whatever `more_channels(person)` gives at the moment of asking: the browsers
a person subscribed to Web Push from the officer page ("webpush:<id>", dashboard.push_api.PushRegistry), which
change while the service runs.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

import msgspec

from alerts.model import EscalationTarget, Recipient
from alerts.roster import Duty, Person, Roster, token_hash
from domain.site import Site

# Wider targets first tried when a step's own target has nobody on shift.
_WIDER: dict[EscalationTarget, tuple[EscalationTarget, ...]] = {
    "responsible": ("responsible", "grid_leader", "command"),
    "grid_leader": ("grid_leader", "command", "responsible"),
    "command": ("command", "grid_leader", "responsible"),
}
_ZONE, _MICRO_GRID, _GRID = 3, 2, 1  # how specifically an officer's duty names a zone


class Router:
    """Routing and authorisation over a checked roster. Cheap to call on every tick: lookups are built once.

    more_channels: a person id -> channels they have beyond the roster's, asked each time a Recipient is made
    (e.g. PushRegistry.channels_of); the roster's come first, and a channel listed in both is given once.
    """

    def __init__(
        self, roster: Roster, site: Site, *, more_channels: Callable[[str], Iterable[str]] | None = None
    ) -> None:
        self.roster = roster
        self.site = site
        self.policy = roster.policy
        self._more_channels = more_channels
        self._recipients = {
            p.id: Recipient(person=p.id, name=p.name, role=p.role, channels=p.channels) for p in roster.people.values()
        }
        # zone -> [(specificity, duty)] of officers, most specific first (roster order within a specificity)
        self._officers: dict[str, list[tuple[int, Duty]]] = {z: [] for z in site.zones}
        self._leaders: dict[str, list[Duty]] = {g: [] for g in site.grids}
        self._command: list[Duty] = []
        self._zones_of: dict[str, frozenset[str] | None] = {}
        for duty in roster.duties:
            role = roster.people[duty.person].role
            if role == "officer":
                for zone_id, spec in self._covered(duty):
                    self._officers[zone_id].append((spec, duty))
            elif role == "grid_leader":
                for g in duty.grids:
                    self._leaders[g].append(duty)
            else:
                self._command.append(duty)
        for entries in self._officers.values():
            entries.sort(key=lambda e: -e[0])  # stable: roster order kept within a specificity
        for p in roster.people.values():
            self._zones_of[p.id] = self._scope(p)

    # --- routing ---

    def responsible(self, zone_id: str, now: float) -> tuple[Recipient, ...]:
        """On-shift officers for the zone, most specific duty winning; else the on-shift grid leaders.

        Empty when neither is on shift, or for a zone the site does not have.
        """
        best = 0
        chosen: list[Duty] = []
        for spec, duty in self._officers.get(zone_id, ()):
            if spec < best:
                break
            if self.roster.on_shift(duty, now):
                best = spec
                chosen.append(duty)
        if chosen:
            return self._to_recipients(chosen)
        return self.grid_leaders(zone_id, now)

    def grid_leaders(self, zone_id: str, now: float) -> tuple[Recipient, ...]:
        zone = self.site.zones.get(zone_id)
        if zone is None:
            return ()
        return self._to_recipients(d for d in self._leaders.get(zone.grid, ()) if self.roster.on_shift(d, now))

    def command(self, now: float) -> tuple[Recipient, ...]:
        return self._to_recipients(d for d in self._command if self.roster.on_shift(d, now))

    def recipients(self, zone_id: str, step: int, now: float) -> tuple[Recipient, ...]:
        """Who gets escalation step `step` (0 = the policy's first target; past the end = the last target).

        Falls back to a wider target, then a narrower one, when the step's own target has nobody on shift:
        never empty while anyone with a command or operator duty is on shift.
        """
        for target in _WIDER[self.policy.target(step)]:
            found = self._target(target, zone_id, now)
            if found:
                return found
        return ()

    def _target(self, target: EscalationTarget, zone_id: str, now: float) -> tuple[Recipient, ...]:
        if target == "responsible":
            return self.responsible(zone_id, now)
        if target == "grid_leader":
            return self.grid_leaders(zone_id, now)
        return self.command(now)

    def gaps(self, now: float) -> list[str]:
        """Zones missing an on-shift officer, grid leader or command at `now`, one line each (empty = covered)."""
        out: list[str] = []
        has_command = bool(self.command(now))
        for zone_id, zone in self.site.zones.items():
            missing = []
            if not any(r.role == "officer" for r in self.responsible(zone_id, now)):
                missing.append("officer")
            if not self.grid_leaders(zone_id, now):
                missing.append(f"grid leader of '{zone.grid}'")
            if not has_command:
                missing.append("command")
            if missing:
                out.append(f"{zone_id}: no {', no '.join(missing)} on shift")
        return out

    # --- people and authorisation ---

    def person(self, person_id: str) -> Person | None:
        return self.roster.people.get(person_id)

    def recipient(self, person_id: str) -> Recipient | None:
        r = self._recipients.get(person_id)
        return None if r is None else self._with_more_channels(r)

    def authenticate(self, token: str) -> Person | None:
        """The person whose token_sha256 matches the token, or None. Compares every hash in constant time."""
        if not token:
            return None
        digest = token_hash(token)
        found: Person | None = None
        for p in self.roster.people.values():
            # no early exit: the time taken does not tell which entry matched
            if p.token_sha256 is not None and hmac.compare_digest(digest, p.token_sha256):
                found = p
        return found

    def zones_of(self, person_id: str) -> frozenset[str] | None:
        """Zones a person may act on, whatever their shift; None = all (command, operator); empty if unknown."""
        return self._zones_of.get(person_id, frozenset())

    def can_act(self, person_id: str, zone_id: str) -> bool:
        zones = self.zones_of(person_id)
        return zones is None or zone_id in zones

    def on_shift(self, person_id: str, now: float) -> bool:
        return any(self.roster.on_shift(d, now) for d in self.roster.duties if d.person == person_id)

    # --- helpers ---

    def _covered(self, duty: Duty) -> Iterable[tuple[str, int]]:
        grids, micro, zones = set(duty.grids), set(duty.micro_grids), set(duty.zones)
        for z in self.site.zones.values():
            if z.id in zones:
                yield z.id, _ZONE
            elif z.micro_grid in micro:
                yield z.id, _MICRO_GRID
            elif z.grid in grids:
                yield z.id, _GRID

    def _scope(self, person: Person) -> frozenset[str] | None:
        if person.role in ("command", "operator"):
            return None
        covered: set[str] = set()
        for duty in self.roster.duties_of(person.id):
            covered.update(zone_id for zone_id, _ in self._covered(duty))
        return frozenset(covered)

    def _to_recipients(self, duties: Iterable[Duty]) -> tuple[Recipient, ...]:
        seen: dict[str, Recipient] = {}
        for d in duties:
            if d.person not in seen:
                seen[d.person] = self._with_more_channels(self._recipients[d.person])
        return tuple(seen.values())

    def _with_more_channels(self, r: Recipient) -> Recipient:
        if self._more_channels is None:
            return r
        more = tuple(dict.fromkeys(c for c in self._more_channels(r.person) if c not in r.channels))
        return msgspec.structs.replace(r, channels=r.channels + more) if more else r
