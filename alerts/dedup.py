"""Dedup: is this change worth a push to people's phones? A pure decision that always states its reason.

The caller tracks one key per notification stream (an alert id, or an incident id for grouped riverside
segments) and keeps the `Sent` record of what was last pushed for it. Each tick it describes the key's
current state as a `Candidate`; `judge` compares the two and says whether to notify, with which
`NotificationKind`, why (a sentence for the audit trail), and which `Sent` record to keep if the notification
goes out. `decide` gives the same answer as the shared `DedupDecision` (notify + reason).

The rules, in order:

1. Resolved: pushed once, and only if something was pushed before. A resolution of something never pushed
   is not news; a second resolution is not either. A silence or an inhibition does not hold back the
   all-clear: whoever was told about a situation must learn that it ended.
2. Silenced, then inhibited: not pushed; the alert stays on the wall, marked.
3. Nothing pushed yet (or the last push was a resolution): pushed as new ("raised").
4. Level up: always pushed, acknowledged or not (an acknowledgement of II orange does not cover I red).
5. Segments joined an incident: pushed ("member_added"): a new place with a crowd in it.
6. Level down: never pushed, acknowledged or not. The wall and the officer page show the lower level at once,
   and any reminder or escalation carries it. Pushing calm-downs would wake people for good news, and for a
   zone hovering at a threshold it would double the traffic: because the `Sent` level stays at the higher
   level, the zone going back up to it is "the same level as sent", not a new push.
7. Same level as sent: not pushed, except a reminder ("reminder") when `repeat_s` is given, the key is not
   acknowledged and `repeat_s` has passed since the last push. Segments leaving an incident are not pushed.

>>> first = judge(None, Candidate(key="a1", level=Level.II, members=("riverside-s03",)), now=100.0)
>>> first.notify, first.kind, first.reason
(True, 'raised', 'New alert at II orange in riverside-s03.')
>>> again = judge(first.sent, Candidate(key="a1", level=Level.II, members=("riverside-s03",)), now=140.0)
>>> again.notify, again.reason
(False, 'Same level II orange as sent 40 s ago.')
>>> decide(first.sent, Candidate(key="a1", level=Level.III, members=("riverside-s03",)), now=150.0).reason
'Level down II orange → III yellow: shown, not pushed, because a calming zone must not wake people.'
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from alerts.model import DedupDecision, NotificationKind
from domain.levels import Level


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    """What was last pushed for a key."""

    kind: NotificationKind
    level: Level
    members: tuple[str, ...]  # zone ids, in river order for an incident
    at: float
    acknowledged: bool = False  # whether the key was acknowledged when this was pushed


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """A key's state now, as the caller sees it.

    `silenced_by` / `inhibited_by` optionally name the silence / the worse alert (as `Alert.silenced_by` and
    `Alert.inhibited_by` do) so the reason can say which; giving one without its flag is a ValueError.
    """

    key: str  # alert id, or incident id
    level: Level
    members: tuple[str, ...]  # zone ids: the alert's zone, or the incident's zones in river order
    open: bool = True
    acknowledged: bool = False
    silenced: bool = False
    inhibited: bool = False
    silenced_by: str = ""
    inhibited_by: str = ""

    def __post_init__(self) -> None:
        for flag, name in (("silenced", self.silenced_by), ("inhibited", self.inhibited_by)):
            if name and not getattr(self, flag):
                raise ValueError(
                    f"Candidate {self.key!r}: {flag}_by={name!r} given but {flag} is False; set {flag}=True too"
                )


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """`judge`'s answer. `kind` and `sent` are set exactly when `notify` is True: `kind` is the notification's
    kind, `sent` the record to keep for the key once it goes out (otherwise keep the previous record)."""

    notify: bool
    reason: str
    kind: NotificationKind | None = None
    sent: Sent | None = None

    @property
    def decision(self) -> DedupDecision:
        return DedupDecision(notify=self.notify, reason=self.reason)


def decide(prev: Sent | None, cand: Candidate, now: float, *, repeat_s: float | None = None) -> DedupDecision:
    """Whether to push `cand`, given what was last pushed for its key (`prev`), with the reason."""
    return judge(prev, cand, now, repeat_s=repeat_s).decision


def judge(prev: Sent | None, cand: Candidate, now: float, *, repeat_s: float | None = None) -> Verdict:
    """Whether to push `cand`, as which kind, why, and the `Sent` record to keep (see the module's rules).

    `repeat_s`: remind about an unacknowledged key at the same level this long after the last push;
    None sends no reminders. ValueError unless it is None or positive.
    """
    if repeat_s is not None and not repeat_s > 0:
        raise ValueError(f"repeat_s must be a positive number of seconds, or None for no reminders; got {repeat_s}")
    if not cand.open:
        return _resolution(prev, cand, now)
    if cand.silenced:
        by = cand.silenced_by or "an active silence"
        return Verdict(notify=False, reason=f"Silenced by {by}: shown on the wall, not pushed.")
    if cand.inhibited:
        by = f"alert {cand.inhibited_by}" if cand.inhibited_by else "a worse alert"
        return Verdict(notify=False, reason=f"Inhibited by {by}: it follows from that worse alert, which is pushed.")
    if prev is None or prev.kind == "resolved":
        return _push("raised", _new_reason(cand), cand, now)

    label = cand.level.label
    added = tuple(m for m in cand.members if m not in prev.members)
    removed = tuple(m for m in prev.members if m not in cand.members)
    if cand.level > prev.level:
        joined = f"; {_joined(added)}" if added else ""
        return _push("level_up", f"Level up {prev.level.label} → {label}{joined}.", cand, now)
    if added:
        calmer = f" (level now {label}, down from {prev.level.label})" if cand.level < prev.level else ""
        return _push("member_added", f"{_cap(_joined(added))}{calmer}.", cand, now)
    if cand.level < prev.level:
        left = f" {_cap(_left(removed))}." if removed else ""
        reason = f"Level down {prev.level.label} → {label}: shown, not pushed, because a calming zone must not wake"
        return Verdict(notify=False, reason=f"{reason} people.{left}")

    ago = max(now - prev.at, 0.0)
    if repeat_s is not None and not cand.acknowledged and ago >= repeat_s:
        state = "no longer acknowledged" if prev.acknowledged else "unacknowledged"
        return _push("reminder", f"Still {label} and {state} after {_span(ago)}.", cand, now)
    if removed:
        rest = f"the rest stays {label} as sent {_span(ago)} ago"
        return Verdict(notify=False, reason=f"{_cap(_left(removed))}: shown, not pushed; {rest}.")
    same = f"Same level {label} as sent {_span(ago)} ago"
    if cand.acknowledged:
        return Verdict(notify=False, reason=f"{same}, and acknowledged.")
    if repeat_s is not None:
        return Verdict(notify=False, reason=f"{same}; a reminder follows {_span(repeat_s)} after it if unacknowledged.")
    return Verdict(notify=False, reason=f"{same}.")


def _resolution(prev: Sent | None, cand: Candidate, now: float) -> Verdict:
    if prev is None:
        return Verdict(notify=False, reason="Resolved before anything was pushed: nothing to call off.")
    ago = _span(max(now - prev.at, 0.0))
    if prev.kind == "resolved":
        return Verdict(notify=False, reason=f"Resolved, and the resolution was already pushed {ago} ago.")
    reason = f"Resolved; {prev.level.label} was pushed {ago} ago, so people are told it ended."
    return _push("resolved", reason, cand, now)


def _push(kind: NotificationKind, reason: str, cand: Candidate, now: float) -> Verdict:
    sent = Sent(kind=kind, level=cand.level, members=cand.members, at=now, acknowledged=cand.acknowledged)
    return Verdict(notify=True, reason=reason, kind=kind, sent=sent)


def _new_reason(cand: Candidate) -> str:
    label = cand.level.label
    if len(cand.members) > 1:
        return f"New incident at {label} across {_and(cand.members)}."
    if cand.members:
        return f"New alert at {label} in {cand.members[0]}."
    return f"New alert at {label}."


def _joined(zones: Sequence[str]) -> str:
    noun = "segment" if len(zones) == 1 else "segments"
    return f"{noun} {_and(zones)} joined the incident"


def _left(zones: Sequence[str]) -> str:
    noun = "segment" if len(zones) == 1 else "segments"
    return f"{noun} {_and(zones)} left the incident"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _span(seconds: float) -> str:
    """'40 s', '15 min', '2 h 5 min': how a person reads a duration in a reason."""
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"
