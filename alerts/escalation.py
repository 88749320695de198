"""Escalation timers: when nobody acknowledges, tell the next step of the policy; then remind; re-raise stale acks.

`Escalator` is a small state machine over keys (an alert id, or an incident id for a grouped incident). It
sends nothing itself: the caller notifies, tells it what happened (`start`, `level_changed`, `acknowledged`,
`reopen`, `stop`) and asks on each tick what is due (`due`, `ack_expired`). The clock is only ever the `now`
passed in, so a replay or a test can run a day in milliseconds.

Timing, with the policy's waits multiplied by `emergency_factor` for a zone in emergency mode:

- step n+1 is due once `delay_s[level]` has passed since step n was told, measured at the alert's *current*
  level: a blue alert that turns red two minutes in escalates at once, it does not wait out the blue delay;
- after the last step: a reminder every `repeat_s`, `max_repeats` at most, then silence (the alert stays on
  the wall and in the API; the people at the last step have been told `max_repeats + 1` times);
- an acknowledgement stops escalation; after `ack_ttl_s[level]` (from the latest acknowledgement) an alert
  still tracked is reported once by `ack_expired`, and the caller re-raises it with `reopen` (step 0 again).

Each Due is returned once: `due` moves the key on as it reports it, and `to_state`/`from_state` carry the
timers over a restart, so nothing already sent is sent again.

>>> from alerts.roster import EscalationPolicy
>>> esc = Escalator(EscalationPolicy())
>>> esc.start("a1", "riverside-s05", Level.I, now=1000.0)
>>> esc.due(1119.0, lambda zone: False)
[]
>>> [(d.step, d.kind) for d in esc.due(1120.0, lambda zone: False)]
[(1, 'escalated')]
>>> esc.due(1120.0, lambda zone: False)
[]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from alerts.roster import EscalationPolicy
from domain.levels import Level

DueKind = Literal["escalated", "reminder"]
Emergency = Callable[[str], bool]  # zone id -> is the zone (or its grid, or the district) in emergency mode
STATE_VERSION = 1


class Due(msgspec.Struct, frozen=True, kw_only=True):
    """Tell escalation step `step` about `key` now (kind "escalated"), or remind it (kind "reminder")."""

    key: str
    zone: str
    step: int
    kind: DueKind
    level: Level
    repeat: int  # 0 for an escalation; 1..max_repeats for reminders


class Tracked(msgspec.Struct, frozen=True, kw_only=True):
    """One key's escalation state (a snapshot: the Escalator replaces it, never mutates it)."""

    zone: str
    level: Level
    step: int  # index into the policy's steps of the last step told
    started_at: float  # when step 0 was told (start or the latest reopen)
    step_at: float  # when the current step was told
    last_at: float  # when the current step was last told (step_at, or the latest reminder)
    repeats: int = 0  # reminders sent at the last step
    acked_at: float | None = None  # latest acknowledgement; None while escalating
    ack_expired: bool = False  # ack_expired() has reported this ack; waiting for reopen() or stop()


class _State(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    version: int
    tracked: dict[str, Tracked]


class Escalator:
    def __init__(self, policy: EscalationPolicy) -> None:
        self.policy = policy
        self._keys: dict[str, Tracked] = {}

    # --- what happened ---

    def start(self, key: str, zone: str, level: Level, now: float) -> None:
        """Step 0 has just been told about `key` at `now`. A key already tracked starts over."""
        self._check_level(level)
        self._keys[key] = Tracked(zone=zone, level=level, step=0, started_at=now, step_at=now, last_at=now)

    def level_changed(self, key: str, level: Level, now: float) -> bool:
        """The alert's level changed at `now`: the current step's wait follows the new level from now on.

        An acknowledgement is kept (the caller may `reopen` if a rise should restart escalation); its ttl
        follows the new level too. False if the key is not tracked.
        """
        self._check_level(level)
        t = self._keys.get(key)
        if t is None:
            return False
        self._keys[key] = msgspec.structs.replace(t, level=level)
        return True

    def acknowledged(self, key: str, now: float) -> bool:
        """Someone acknowledged: escalation stops; the ack holds for ack_ttl_s[level] from `now`."""
        t = self._keys.get(key)
        if t is None:
            return False
        self._keys[key] = msgspec.structs.replace(t, acked_at=now, ack_expired=False)
        return True

    def reopen(self, key: str, level: Level, now: float) -> bool:
        """An acknowledgement ran out and the alert is re-raised: step 0 has just been told again at `now`."""
        self._check_level(level)
        t = self._keys.get(key)
        if t is None:
            return False
        self._keys[key] = Tracked(zone=t.zone, level=level, step=0, started_at=now, step_at=now, last_at=now)
        return True

    def stop(self, key: str) -> bool:
        """Resolved (or no longer ours): forget the key. False if it was not tracked."""
        return self._keys.pop(key, None) is not None

    # --- what is due ---

    def due(self, now: float, emergency: Emergency) -> list[Due]:
        """Escalations and reminders due at `now`, earliest first; each is returned once."""
        found: list[tuple[float, Due]] = []
        last = self.policy.last_step
        for key, t in list(self._keys.items()):
            if t.acked_at is not None:
                continue
            em = emergency(t.zone)
            if t.step < last:
                at = t.step_at + self.policy.delay(t.level, em)
                if now >= at:
                    step = t.step + 1
                    self._keys[key] = msgspec.structs.replace(t, step=step, step_at=now, last_at=now, repeats=0)
                    found.append((at, Due(key=key, zone=t.zone, step=step, kind="escalated", level=t.level, repeat=0)))
            elif t.repeats < self.policy.max_repeats:
                at = t.last_at + self.policy.repeat(em)
                if now >= at:
                    n = t.repeats + 1
                    self._keys[key] = msgspec.structs.replace(t, repeats=n, last_at=now)
                    found.append((at, Due(key=key, zone=t.zone, step=t.step, kind="reminder", level=t.level, repeat=n)))
        found.sort(key=lambda e: (e[0], e[1].key))
        return [d for _, d in found]

    def ack_expired(self, now: float, emergency: Emergency) -> list[str]:
        """Acknowledged keys whose acknowledgement ran out at `now` (each reported once; call reopen or stop)."""
        out: list[str] = []
        for key, t in list(self._keys.items()):
            if t.acked_at is None or t.ack_expired:
                continue
            if now >= t.acked_at + self.policy.ack_ttl(t.level, emergency(t.zone)):
                self._keys[key] = msgspec.structs.replace(t, ack_expired=True)
                out.append(key)
        return out

    def next_due(self, emergency: Emergency) -> float | None:
        """The earliest time `due` or `ack_expired` will have something, or None: for a scheduler's sleep."""
        times: list[float] = []
        last = self.policy.last_step
        for t in self._keys.values():
            em = emergency(t.zone)
            if t.acked_at is not None:
                if not t.ack_expired:
                    times.append(t.acked_at + self.policy.ack_ttl(t.level, em))
            elif t.step < last:
                times.append(t.step_at + self.policy.delay(t.level, em))
            elif t.repeats < self.policy.max_repeats:
                times.append(t.last_at + self.policy.repeat(em))
        return min(times, default=None)

    # --- inspection and restart ---

    def tracked(self) -> dict[str, Tracked]:
        return dict(self._keys)

    def get(self, key: str) -> Tracked | None:
        return self._keys.get(key)

    def adopt(self, key: str, timer: Tracked) -> None:
        """Carry a timer over to a new key (an alert joining or leaving an incident keeps its escalation)."""
        self._keys[key] = timer

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def to_state(self) -> dict[str, Any]:
        """JSON-able timers: give it back to `from_state` after a restart."""
        out: dict[str, Any] = msgspec.to_builtins(_State(version=STATE_VERSION, tracked=self._keys))
        return out

    def from_state(self, state: dict[str, Any]) -> None:
        """Replace the timers with saved ones; `{}` (nothing saved yet) means none.

        Steps beyond a since-shortened policy stop at its last step.
        """
        if not state:
            self._keys = {}
            return
        try:
            saved = msgspec.convert(state, _State, strict=True)
        except msgspec.ValidationError as e:
            raise ValueError(f"escalation state cannot be read ({e}); discard it to start the timers afresh") from e
        if saved.version != STATE_VERSION:
            raise ValueError(f"escalation state version {saved.version}, this code reads {STATE_VERSION}")
        last = self.policy.last_step
        keys: dict[str, Tracked] = {}
        for key, t in saved.tracked.items():
            self._check_level(t.level)
            keys[key] = msgspec.structs.replace(t, step=last) if t.step > last else t
        self._keys = keys

    def _check_level(self, level: Level) -> None:
        if level not in self.policy.delay_s:
            raise ValueError(f"level {level.label} is not escalated: stop() the key when its alert is resolved")
