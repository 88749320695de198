"""The duty roster: who is reachable how, who answers for which zones on which shift, and the escalation policy.

Loaded from a TOML file by `load_roster` and checked against the `Site` as strictly as the site file itself:
unknown keys, dangling ids, malformed times or channel URLs and duties that do not fit a person's role are
all reported at once, each naming the file, the entry and the field (docs/roster.md has the format).

>>> token_hash("s3cret")[:16]
'1ec1c26b50d5d3c5'
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from alerts.model import EscalationTarget, Role
from domain.levels import GRADED, Level
from domain.loader import name_dict_key
from domain.site import Site

ALWAYS = "always"  # the shift name of a round-the-clock duty
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()

# Worse levels wait less: a red alert nobody answers reaches the grid leader after two minutes.
DEFAULT_DELAY_S: dict[Level, float] = {Level.I: 120.0, Level.II: 300.0, Level.III: 600.0, Level.IV: 1200.0}
DEFAULT_ACK_TTL_S: dict[Level, float] = {Level.I: 600.0, Level.II: 1200.0, Level.III: 1800.0, Level.IV: 3600.0}
DEFAULT_STEPS: tuple[EscalationTarget, ...] = ("responsible", "grid_leader", "command")
# Shortest wait: below a second a "positive" wait (5e-324 s) is zero in practice, even more so once halved.
MIN_WAIT_S = 1.0


def token_hash(token: str) -> str:
    """The hex sha256 of an API token, as written in a person's `token_sha256`."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def with_tokens(text: str, tokens: Mapping[str, str]) -> str:
    r"""Roster TOML text with `token_sha256` set for each person id in `tokens` (person -> token): a demo's or a
    test's logins on the shipped roster. Each [[people]] block must start with its id line; a person not
    found is an error naming them.

    >>> with_tokens('[[people]]\nid = "ann"\nname = "Ann"\n', {"ann": "s3cret"}).splitlines()[2][:30]
    'token_sha256 = "1ec1c26b50d5d3'
    """
    for person, token in tokens.items():
        head = f'[[people]]\nid = "{person}"\n'
        n = text.count(head)
        text = text.replace(head, f'{head}token_sha256 = "{token_hash(token)}"\n')
        if n != 1:
            raise ValueError(f"no [[people]] entry starting with id = {person!r} in the roster")
    return text


# --- the file as written ------------------------------------------------------------------------------------


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class RosterInfo(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    site: str  # the site id this roster is for: a roster for another site is refused
    name: str = ""


class Person(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    name: str
    role: Role
    channels: tuple[str, ...] = ()  # Apprise URLs ("ntfy://host/topic"), or "webpush:<subscription id>"
    token_sha256: str | None = None  # without it the person cannot log in to the API
    phone: str | None = None


class Shift(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A daily time window in the site's timezone; `end` before `start` wraps past midnight.

    An overnight shift belongs to the day it starts on: `days = ["fri"]` with 20:00-08:00 runs from Friday
    20:00 to Saturday 08:00. Equal start and end make a 24-hour shift; no days means every day.
    """

    id: str
    start: str  # "HH:MM"
    end: str  # "HH:MM", or "24:00" for midnight at the end of the day
    days: tuple[Weekday, ...] = ()
    name: str = ""

    @property
    def start_s(self) -> int:
        return _clock_seconds(self.start)

    @property
    def end_s(self) -> int:
        return _clock_seconds(self.end)

    def covers(self, local: datetime) -> bool:
        """Is a local (site timezone) wall-clock time within this shift?"""
        t = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        start, end, wd = self.start_s, self.end_s, local.weekday()
        if start < end:
            return start <= t < end and self._on(wd)
        if t >= start:  # the evening part, started today
            return self._on(wd)
        return t < end and self._on((wd - 1) % 7)  # the morning part of a shift started yesterday

    def _on(self, weekday: int) -> bool:
        return not self.days or WEEKDAYS[weekday] in self.days


class Duty(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A person answering for grids, micro-grids and/or zones during a shift (or always)."""

    person: str
    shift: str  # a shift id, or "always"
    grids: tuple[str, ...] = ()
    micro_grids: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    note: str = ""


class EscalationSpec(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """[escalation] as written: level keys are text ("I", "red", "II orange"); missing levels keep defaults."""

    steps: tuple[EscalationTarget, ...] = DEFAULT_STEPS
    delay_s: dict[str, float] = {}
    repeat_s: float = 600.0
    max_repeats: int = 3
    ack_ttl_s: dict[str, float] = {}
    emergency_factor: float = 0.5


class RosterFile(_Strict, frozen=True, forbid_unknown_fields=True, kw_only=True):
    roster: RosterInfo
    people: tuple[Person, ...]
    shifts: tuple[Shift, ...] = ()
    duties: tuple[Duty, ...] = ()
    escalation: EscalationSpec = EscalationSpec()


# --- the checked policy -------------------------------------------------------------------------------------


class EscalationPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Who is told next when nobody acknowledges, and when.

    Step 0 (the first target) is told when an alert is raised; step n+1 when step n has not acknowledged
    within `delay_s[level]`. After the last step, reminders every `repeat_s`, at most `max_repeats`, then
    silence. An acknowledgement holds for `ack_ttl_s[level]`. In emergency mode every wait is multiplied by
    `emergency_factor`.

    >>> p = EscalationPolicy()
    >>> p.delay(Level.I), p.delay(Level.I, emergency=True), p.target(7)
    (120.0, 60.0, 'command')
    """

    steps: tuple[EscalationTarget, ...] = DEFAULT_STEPS
    delay_s: dict[Level, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_DELAY_S))
    repeat_s: float = 600.0
    max_repeats: int = 3
    ack_ttl_s: dict[Level, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_ACK_TTL_S))
    emergency_factor: float = 0.5

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid escalation policy: " + "; ".join(problems))

    def problems(self) -> list[str]:
        return _policy_checks(
            self.steps, self.delay_s, self.ack_ttl_s, self.repeat_s, self.max_repeats, self.emergency_factor
        )

    def target(self, step: int) -> EscalationTarget:
        """The target of escalation step `step`; steps past the end stay at the last target."""
        return self.steps[min(max(step, 0), len(self.steps) - 1)]

    @property
    def last_step(self) -> int:
        return len(self.steps) - 1

    def delay(self, level: Level, emergency: bool = False) -> float:
        return self._per_level(self.delay_s, level, "delay_s") * self._factor(emergency)

    def ack_ttl(self, level: Level, emergency: bool = False) -> float:
        return self._per_level(self.ack_ttl_s, level, "ack_ttl_s") * self._factor(emergency)

    def repeat(self, emergency: bool = False) -> float:
        return self.repeat_s * self._factor(emergency)

    def _factor(self, emergency: bool) -> float:
        return self.emergency_factor if emergency else 1.0

    @staticmethod
    def _per_level(table: Mapping[Level, float], level: Level, name: str) -> float:
        if level not in table:
            raise ValueError(f"no {name} for level {level.label}: only IV..I alerts are escalated")
        return table[level]


def _policy_checks(
    steps: tuple[EscalationTarget, ...],
    delay_s: Mapping[Level, float],
    ack_ttl_s: Mapping[Level, float],
    repeat_s: float,
    max_repeats: int,
    emergency_factor: float,
) -> list[str]:
    out: list[str] = []
    if not steps:
        out.append("field steps: list at least one of responsible, grid_leader, command")
    for target in sorted(set(steps)):
        if steps.count(target) > 1:
            out.append(f"field steps: '{target}' is listed twice; use repeat_s/max_repeats for reminders")
    out += _check_per_level("delay_s", delay_s)
    out += _check_per_level("ack_ttl_s", ack_ttl_s)
    if not (math.isfinite(repeat_s) and repeat_s >= MIN_WAIT_S):
        out.append(f"field repeat_s: must be positive seconds (at least {MIN_WAIT_S:g} s), got {repeat_s}")
    if max_repeats < 0:
        out.append(f"field max_repeats: must be 0 or more, got {max_repeats}")
    if not (0 < emergency_factor <= 1):
        out.append(f"field emergency_factor: must be within (0, 1] (0.5 halves every wait), got {emergency_factor}")
    elif not out:
        waits = [("repeat_s", repeat_s)]
        waits += [(f"delay_s.{lv.name}", v) for lv, v in delay_s.items()]
        waits += [(f"ack_ttl_s.{lv.name}", v) for lv, v in ack_ttl_s.items()]
        name, shortest = min(waits, key=lambda w: w[1])
        if shortest * emergency_factor < MIN_WAIT_S:
            out.append(
                f"field emergency_factor: {emergency_factor:g} turns {name} ({shortest:g} s) into "
                f"{shortest * emergency_factor:g} s in emergency mode, under the {MIN_WAIT_S:g} s minimum; "
                f"raise emergency_factor or {name}"
            )
    return out


def _check_per_level(name: str, table: Mapping[Level, float]) -> list[str]:
    out: list[str] = []
    missing = [lv.name for lv in GRADED if lv not in table]
    if missing:
        out.append(f"field {name}: no value for level(s) {', '.join(missing)}")
    if Level.NORMAL in table:
        out.append(f"field {name}: 'normal' is not escalated; give IV, III, II and I")
    for lv, v in table.items():
        if not (math.isfinite(v) and v >= MIN_WAIT_S):
            out.append(f"field {name}.{lv.name}: must be positive seconds (at least {MIN_WAIT_S:g} s), got {v}")
    present = [lv for lv in GRADED if lv in table]
    for lower, higher in itertools.pairwise(present):
        if table[higher] > table[lower]:
            out.append(
                f"field {name}: {higher.label} ({table[higher]:g} s) must not be longer than "
                f"{lower.label} ({table[lower]:g} s); a worse level waits less"
            )
    return out


# --- the checked roster -------------------------------------------------------------------------------------


class Roster:
    """A checked roster bound to its site. Read-only by convention; `alerts.routing.Router` answers questions."""

    __slots__ = ("duties", "file", "path", "people", "policy", "shifts", "site_id", "tz")

    def __init__(self, spec: RosterFile, site: Site, path: str = "<memory>") -> None:
        self.file = spec
        self.path = path
        self.site_id = site.info.id
        self.tz = ZoneInfo(site.info.timezone)
        self.people: dict[str, Person] = {p.id: p for p in spec.people}
        self.shifts: dict[str, Shift] = {s.id: s for s in spec.shifts}
        self.duties: tuple[Duty, ...] = spec.duties
        self.policy = _policy(spec.escalation)

    def local_time(self, now: float) -> datetime:
        return datetime.fromtimestamp(now, self.tz)

    def on_shift(self, duty: Duty, now: float) -> bool:
        """Is the duty's shift running at epoch time `now` (read in the site's timezone)?"""
        if duty.shift == ALWAYS:
            return True
        return self.shifts[duty.shift].covers(self.local_time(now))

    def duties_of(self, person_id: str) -> tuple[Duty, ...]:
        return tuple(d for d in self.duties if d.person == person_id)


class RosterError(ValueError):
    """A roster file that cannot be used. `problems` lists every problem found, one line each."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the roster file:\n{body}")


def default_roster_path() -> Path:
    return Path(str(resources.files("alerts") / "data" / "lujiazui_roster.toml"))


def load_roster(path: str | Path | None, site: Site) -> Roster:
    """Read and check a roster file against `site`; None reads the default Lujiazui roster."""
    p = Path(path) if path is not None else default_roster_path()
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise RosterError(str(p), [f"cannot read the file ({e.strerror}); check the path"]) from e
    return parse_roster(raw, site, str(p))


def parse_roster(raw: bytes | str, site: Site, path: str = "<memory>") -> Roster:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RosterError(path, [f"not valid TOML: {e}"]) from e
    except UnicodeDecodeError as e:
        raise RosterError(path, [f"not UTF-8 text: {e}"]) from e
    except RecursionError as e:  # tomllib recurses once per level of nested arrays and inline tables
        raise RosterError(
            path, ["not valid TOML: arrays or inline tables nested too deep; no setting needs more than a few levels"]
        ) from e
    try:
        spec = msgspec.convert(data, RosterFile, strict=True)
    except msgspec.ValidationError as e:
        raise RosterError(path, [_explain(name_dict_key(str(e), data, RosterFile), data)]) from e
    problems = check_roster(spec, site)
    if problems:
        raise RosterError(path, problems)
    return Roster(spec, site, path)


# --- checks -------------------------------------------------------------------------------------------------

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{4,}$")
_HINTS = {
    "role": "use one of officer, grid_leader, command, operator",
    "days": "use mon, tue, wed, thu, fri, sat, sun",
    "steps": "use responsible, grid_leader, command",
}


def _clock_seconds(text: str) -> int:
    if text == "24:00":
        return 86_400
    m = _CLOCK_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a time of day: write HH:MM, 00:00 to 23:59")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60


def check_channel(url: str) -> str | None:
    """Why a channel is unusable, or None. Apprise URLs need scheme://target; Web Push is webpush:<id>.

    >>> check_channel("ntfy://127.0.0.1:8090/crowdflow-ann") is None
    True
    >>> check_channel("127.0.0.1:8090/topic")
    "'127.0.0.1:8090/topic' has no scheme: write it as an Apprise URL such as ntfy://host/topic"
    """
    shown = url if len(url) <= 60 else url[:57] + "..."
    if not url or url != url.strip() or any(c.isspace() for c in url):
        return f"{shown!r} is empty or contains spaces: write one URL per list item"
    scheme, sep, rest = url.partition(":")
    if not sep or not _SCHEME_RE.match(scheme):
        return f"{shown!r} has no scheme: write it as an Apprise URL such as ntfy://host/topic"
    if scheme.lower() == "webpush":
        if not rest or rest.startswith("/"):
            return f"{shown!r}: a Web Push channel is webpush:<subscription id>"
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as e:
        return f"{shown!r} is not a valid URL ({e})"
    if not rest.startswith("//") or not parts.netloc:
        return f"{shown!r} has no host or target after '{scheme}://': see the Apprise URL of the service"
    return None


def check_roster(spec: RosterFile, site: Site) -> list[str]:
    """Cross-checks msgspec cannot do: unique ids, ids known to the site, times, URLs, role fit, policy."""
    problems: list[str] = []
    if spec.roster.site != site.info.id:
        problems.append(
            f"roster, field site: this roster is for site '{spec.roster.site}', "
            f"but the site loaded is '{site.info.id}' ({site.path}); use the roster written for it"
        )
    try:
        ZoneInfo(site.info.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory: IsADirectoryError
        problems.append(f"site timezone '{site.info.timezone}' is unknown; shifts cannot be read in it")
    problems += _check_people(spec.people)
    problems += _check_shifts(spec.shifts)
    problems += _check_duties(spec, site)
    policy_problems = _policy_problems(spec.escalation)
    problems += [f"escalation, {p}" for p in policy_problems]
    roles_on_duty = {p.role for p in spec.people if any(d.person == p.id for d in spec.duties)}
    if "grid_leader" in spec.escalation.steps and "grid_leader" not in roles_on_duty:
        problems.append("escalation, field steps: 'grid_leader' is a step but no grid_leader has a duty; add one")
    if "command" in spec.escalation.steps and not roles_on_duty & {"command", "operator"}:
        problems.append("escalation, field steps: 'command' is a step but no command or operator has a duty; add one")
    return problems


def _check_people(people: Iterable[Person]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    tokens: dict[str, str] = {}
    for i, p in enumerate(people, 1):
        where = f"people '{p.id}' (entry {i})"
        if p.id in seen:
            out.append(f"{where}, field id: used twice; person ids must be unique")
        seen.add(p.id)
        if not _ID_RE.match(p.id):
            out.append(
                f"{where}, field id: use letters, digits, '.', '_' and '-' only, starting with a letter or digit"
            )
        if not p.name.strip():
            out.append(f"{where}, field name: must not be empty")
        if not p.channels and p.role != "operator":
            out.append(f"{where}, field channels: no way to reach this {p.role}; list at least one channel URL")
        for j, url in enumerate(p.channels):
            why = check_channel(url)
            if why:
                out.append(f"{where}, field channels[{j}]: {why}")
            elif url in p.channels[:j]:
                out.append(f"{where}, field channels[{j}]: listed twice")
        if p.token_sha256 is not None:
            if not _HEX64_RE.match(p.token_sha256):
                out.append(
                    f"{where}, field token_sha256: must be 64 lowercase hex characters, the sha256 of the token "
                    "(python -c 'from alerts.roster import token_hash; print(token_hash(\"...\"))')"
                )
            elif p.token_sha256 in tokens:
                out.append(
                    f"{where}, field token_sha256: same token as '{tokens[p.token_sha256]}'; give each their own"
                )
            else:
                tokens[p.token_sha256] = p.id
        if p.phone is not None and not _PHONE_RE.match(p.phone):
            out.append(f"{where}, field phone: {p.phone!r} is not a phone number (digits, spaces, +, -, parentheses)")
    return out


def _check_shifts(shifts: Iterable[Shift]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, s in enumerate(shifts, 1):
        where = f"shifts '{s.id}' (entry {i})"
        if s.id in seen:
            out.append(f"{where}, field id: used twice; shift ids must be unique")
        seen.add(s.id)
        if s.id == ALWAYS:
            out.append(f"{where}, field id: '{ALWAYS}' is reserved for round-the-clock duties; pick another name")
        for field, value in (("start", s.start), ("end", s.end)):
            if value == "24:00":
                if field == "start":
                    out.append(f"{where}, field start: a shift cannot start at 24:00; write 00:00")
                continue
            try:
                _clock_seconds(value)
            except ValueError as e:
                out.append(f"{where}, field {field}: {e}")
        for day in sorted(set(s.days)):
            if s.days.count(day) > 1:
                out.append(f"{where}, field days: '{day}' listed twice")
    return out


def _check_duties(spec: RosterFile, site: Site) -> list[str]:
    out: list[str] = []
    people = {p.id: p for p in spec.people}
    shifts = {s.id for s in spec.shifts}
    known: dict[str, Mapping[str, object]] = {"grids": site.grids, "micro_grids": site.micro_grids, "zones": site.zones}
    singular = {"grids": "grid", "micro_grids": "micro-grid", "zones": "zone"}
    for i, d in enumerate(spec.duties, 1):
        where = f"duties entry {i} (person '{d.person}')"
        person = people.get(d.person)
        if person is None:
            out.append(f"{where}, field person: no person '{d.person}' in [[people]]")
        if d.shift != ALWAYS and d.shift not in shifts:
            out.append(f"{where}, field shift: no shift '{d.shift}' in [[shifts]]; name one, or write '{ALWAYS}'")
        for field in ("grids", "micro_grids", "zones"):
            ids: tuple[str, ...] = getattr(d, field)
            for j, ident in enumerate(ids):
                if ident not in known[field]:
                    out.append(f"{where}, field {field}: no {singular[field]} '{ident}' in site '{site.info.id}'")
                elif ident in ids[:j]:
                    out.append(f"{where}, field {field}: '{ident}' listed twice")
        if person is None:
            continue
        scoped = bool(d.grids or d.micro_grids or d.zones)
        if person.role == "officer" and not scoped:
            out.append(f"{where}: an officer's duty must name the grids, micro_grids or zones they answer for")
        elif person.role == "grid_leader" and (not d.grids or d.micro_grids or d.zones):
            out.append(f"{where}, field grids: a grid_leader's duty names whole grids (grids = [...]) and nothing else")
        elif person.role in ("command", "operator") and scoped:
            out.append(f"{where}: a {person.role} covers the whole site; remove grids, micro_grids and zones")
    return out


def _levels(
    name: str, raw: Mapping[str, float], defaults: Mapping[Level, float]
) -> tuple[dict[Level, float], list[str]]:
    table = dict(defaults)
    problems: list[str] = []
    given: dict[Level, str] = {}
    for key, value in raw.items():
        try:
            lv = Level.parse(key)
        except ValueError as e:
            problems.append(f"field {name}.{key}: {e}")
            continue
        if lv in given:
            problems.append(f"field {name}: '{key}' and '{given[lv]}' are the same level {lv.label}")
        given[lv] = key
        table[lv] = float(value)
    return table, problems


def _policy_problems(e: EscalationSpec) -> list[str]:
    delay, p1 = _levels("delay_s", e.delay_s, DEFAULT_DELAY_S)
    ttl, p2 = _levels("ack_ttl_s", e.ack_ttl_s, DEFAULT_ACK_TTL_S)
    return p1 + p2 + _policy_checks(e.steps, delay, ttl, e.repeat_s, e.max_repeats, e.emergency_factor)


def _policy(e: EscalationSpec) -> EscalationPolicy:
    delay, _ = _levels("delay_s", e.delay_s, DEFAULT_DELAY_S)
    ttl, _ = _levels("ack_ttl_s", e.ack_ttl_s, DEFAULT_ACK_TTL_S)
    return EscalationPolicy(
        steps=e.steps,
        delay_s=delay,
        repeat_s=e.repeat_s,
        max_repeats=e.max_repeats,
        ack_ttl_s=ttl,
        emergency_factor=e.emergency_factor,
    )


_PATH_RE = re.compile(r"^\$\.(\w+)(?:\[(\d+)\])?\.?(.*)$")


def _explain(message: str, data: dict[str, object]) -> str:
    """Turn msgspec's `... - at `$.people[3].role`` into `people 'ann' (entry 4), field role: ...`."""
    what = message.split(" - at ")[0]
    m = re.search(r"`(\$[^`]*)`", message)
    if not m or m.group(1) == "$":
        return f"top level: {what}" + ("; allowed sections: roster, people, shifts, duties, escalation")
    pm = _PATH_RE.match(m.group(1))
    if not pm:
        return message
    section, idx, rest = pm.group(1), pm.group(2), pm.group(3)
    field_name = re.sub(r"\[\d+\]$", "", rest.split(".")[0]) if rest else ""
    hint = f" ({_HINTS[field_name]})" if field_name in _HINTS and "Invalid enum" in what else ""
    if field_name in ("start", "end") and "Expected `str`" in what:
        hint = ' (write the time of day in quotes: "HH:MM")'

    field = f", field {rest}" if rest else ""
    if idx is None:
        return f"{section}{field}: {what}{hint}"
    i = int(idx)
    items = data.get(section)
    item = items[i] if isinstance(items, list) and i < len(items) else None
    if section == "duties":
        person = item.get("person", "?") if isinstance(item, dict) else "?"
        return f"duties entry {i + 1} (person '{person}'){field}: {what}{hint}"
    ident = item.get("id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
    return f"{section} '{ident}' (entry {i + 1}){field}: {what}{hint}"
