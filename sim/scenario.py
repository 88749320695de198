"""Scenarios as data: a day, a time window, surges on zones and faults on sensors (sim/scenarios/*.toml).

Loaded strictly: unknown keys, wrong types and dangling references are errors naming the file and field.
Local times in a scenario belong to its `day`, except times earlier than `start`, which fall on the next
day - so a New Year's Eve run from 18:00 to 01:00 reads `end = 01:00:00` as 1 January.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
import typing
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from domain.site import CounterMode, SensorKind, Site, ZoneKind

SCENARIO_DIR = Path(__file__).parent / "scenarios"

FaultType = Literal[
    "dropout", "stuck", "reset", "duplicate", "late", "out_of_order", "malformed", "clock_skew"
]
FAULT_TYPES: tuple[str, ...] = typing.get_args(FaultType)
MalformedVariant = Literal["invalid_json", "wrong_type", "missing_field", "unknown_sensor"]
MALFORMED_VARIANTS: tuple[MalformedVariant, ...] = typing.get_args(MalformedVariant)

# Which params each fault type understands; anything else given is a mistake worth reporting.
_PARAMS_FOR: dict[str, set[str]] = {
    "late": {"delay_s"},
    "clock_skew": {"skew_s"},
    "malformed": {"every", "variants"},
    "duplicate": {"every"},
}


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class FaultParams(_Strict, frozen=True, kw_only=True):
    delay_s: float | None = None  # late: delivered this long after the event time (default 120 s)
    skew_s: float | None = None  # clock_skew: added to the payload ts (default +300 s; may be negative)
    every: int | None = None  # malformed / duplicate: affect every n-th message in the window (default 1)
    variants: tuple[MalformedVariant, ...] | None = None  # malformed: kinds of garbage, used in turn


class SensorPick(_Strict, frozen=True, kw_only=True):
    """Pick a sensor by what it is rather than its id, so a scenario runs on any site: the index-th
    (modulo how many match) sensor of this kind (and counter mode) in site order."""

    kind: SensorKind = "counter"
    mode: CounterMode | None = None
    index: int = 0


class Fault(_Strict, frozen=True, kw_only=True):
    sensor: str = ""  # a sensor id, or
    pick: SensorPick | None = None  # a sensor picked by kind
    type: FaultType
    start: dt.time
    end: dt.time
    params: FaultParams = FaultParams()
    note: str = ""

    @property
    def delay_s(self) -> float:
        return self.params.delay_s if self.params.delay_s is not None else 120.0

    @property
    def skew_s(self) -> float:
        return self.params.skew_s if self.params.skew_s is not None else 300.0

    @property
    def every(self) -> int:
        return self.params.every if self.params.every is not None else 1

    @property
    def variants(self) -> tuple[MalformedVariant, ...]:
        return self.params.variants or MALFORMED_VARIANTS


class Surge(_Strict, frozen=True, kw_only=True):
    """A rise of arrivals on some zones: the multiplier rises linearly from 1 at `start` to its peak value at
    `peak` and falls back to 1 at `end`; the dwell factor (longer stays, e.g. waiting for a countdown) too.

    Either `multiplier` (the same factor on every selected zone's arrivals) or `peak_share`: extra arrivals,
    ramping the same way, sized so that each zone's steady-state occupancy (arrival rate × mean stay) at the
    peak is `peak_share` × its capacity (never fewer people than without the surge); this keeps one scenario
    meaningful on any site. `spread` varies peak_share per zone by up to ±spread (seeded), so segments differ.
    Occupancy lags the steady state by about one mean stay, so the real peak comes later and a little lower.
    """

    zones: tuple[str, ...] = ()
    kind: ZoneKind | None = None
    all: bool = False
    start: dt.time
    peak: dt.time
    end: dt.time
    multiplier: float | None = None
    peak_share: float | None = None
    spread: float = 0.0
    dwell_factor: float = 1.0
    note: str = ""


class Scenario(_Strict, frozen=True, kw_only=True):
    name: str
    description: str
    day: dt.date
    day_type: str
    start: dt.time
    end: dt.time
    step_s: float = 10.0
    seed: int = 0
    surges: tuple[Surge, ...] = ()
    faults: tuple[Fault, ...] = ()
    path: str = "<memory>"  # set by the loader, not written in files

    def at(self, t: dt.time, tz: ZoneInfo) -> float:
        """A local time of this scenario as epoch seconds (times before `start` are on the next day)."""
        day = self.day + dt.timedelta(days=1) if t < self.start else self.day
        return dt.datetime.combine(day, t, tz).timestamp()

    def window(self, tz: ZoneInfo) -> tuple[float, float]:
        t0 = dt.datetime.combine(self.day, self.start, tz).timestamp()
        return t0, self.at(self.end, tz) if self.end != self.start else t0 + 86400.0


class ScenarioError(ValueError):
    """A scenario file that cannot be used; `problems` lists each, naming the field."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the scenario:\n{body}")


def scenario_path(name_or_path: str | Path) -> Path:
    """A bare name (`nye`) means the shipped file sim/scenarios/nye.toml; anything else is a path."""
    s = str(name_or_path)
    if "/" not in s and "\\" not in s and not s.endswith(".toml"):
        return SCENARIO_DIR / f"{s}.toml"
    return Path(s)


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    p = scenario_path(name_or_path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        hint = f"; shipped scenarios: {', '.join(shipped_scenarios())}"
        raise ScenarioError(str(p), [f"cannot read the file ({e.strerror}){hint}"]) from e
    return parse_scenario(raw, str(p))


def parse_scenario(raw: bytes | str, path: str = "<memory>") -> Scenario:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ScenarioError(path, [f"not valid UTF-8 TOML: {e}"]) from e
    if "path" in data:
        raise ScenarioError(path, ["field path: not a scenario setting (it is set by the loader)"])
    try:
        sc = msgspec.convert({**data, "path": path}, Scenario, strict=True)
    except msgspec.ValidationError as e:
        raise ScenarioError(path, [_explain(str(e))]) from e
    problems = check_scenario(sc)
    if problems:
        raise ScenarioError(path, problems)
    return sc


_WHERE_RE = re.compile(r"`\$\.?(.*)`")


def _explain(message: str) -> str:
    """msgspec's `Expected `float`, got `str` - at `$.surges[0].peak_share`` →
    `surges entry 1, field peak_share: Expected ...`."""
    what, _, where = message.partition(" - at ")
    m = _WHERE_RE.search(where)
    if not m or not m.group(1):
        return f"top level: {what}"
    parts = [
        f"{name} entry {int(idx) + 1}" if idx else f"field {name}"
        for name, idx in re.findall(r"(\w+)(?:\[(\d+)\])?", m.group(1))
    ]
    return f"{', '.join(parts)}: {what}"


def check_scenario(sc: Scenario) -> list[str]:
    """Checks that need no site: positive step, sane surge and fault windows, params that fit the type."""
    problems: list[str] = []
    if not sc.step_s > 0:
        problems.append(f"field step_s: must be positive seconds, got {sc.step_s}")
    if sc.end == sc.start:
        problems.append("field end: equals start; a scenario covers less than 24 hours")
    utc = ZoneInfo("UTC")
    for i, s in enumerate(sc.surges, 1):
        where = f"surges entry {i}"
        selectors = sum([bool(s.zones), s.kind is not None, s.all])
        if selectors != 1:
            problems.append(f"{where}: give exactly one of zones, kind or all = true (got {selectors})")
        if (s.multiplier is None) == (s.peak_share is None):
            problems.append(f"{where}: give exactly one of multiplier or peak_share")
        if s.multiplier is not None and s.multiplier <= 0:
            problems.append(f"{where}, field multiplier: must be positive, got {s.multiplier}")
        if s.peak_share is not None and s.peak_share <= 0:
            problems.append(f"{where}, field peak_share: must be positive, got {s.peak_share}")
        if not 0 <= s.spread < 1:
            problems.append(f"{where}, field spread: must be within 0..1, got {s.spread}")
        if s.spread and s.peak_share is None:
            problems.append(f"{where}, field spread: only applies with peak_share")
        if s.dwell_factor <= 0:
            problems.append(f"{where}, field dwell_factor: must be positive, got {s.dwell_factor}")
        a, b, c = sc.at(s.start, utc), sc.at(s.peak, utc), sc.at(s.end, utc)
        if not a <= b < c:
            problems.append(f"{where}: needs start <= peak < end within the scenario window")
    for i, f in enumerate(sc.faults, 1):
        where = f"faults entry {i} ({f.type})"
        if bool(f.sensor) == (f.pick is not None):
            problems.append(f"{where}: give exactly one of sensor (an id) or pick (a kind)")
        if not sc.at(f.start, utc) < sc.at(f.end, utc):
            problems.append(f"{where}: needs start < end within the scenario window")
        given = {k for k in ("delay_s", "skew_s", "every", "variants") if getattr(f.params, k) is not None}
        extra = given - _PARAMS_FOR.get(f.type, set())
        if extra:
            problems.append(f"{where}, field params: {sorted(extra)} do not apply to a {f.type} fault")
        if f.params.every is not None and f.params.every < 1:
            problems.append(f"{where}, field params.every: must be >= 1")
        if f.params.delay_s is not None and f.params.delay_s <= 0:
            problems.append(f"{where}, field params.delay_s: must be positive seconds")
    return problems


def check_against_site(sc: Scenario, site: Site) -> None:
    """Cross-references: the day type, zones, zone kinds and sensors must exist on this site."""
    problems: list[str] = []
    if sc.day_type not in site.profile.day_factor:
        problems.append(
            f"field day_type: '{sc.day_type}' is not a day type of site '{site.info.id}' "
            f"(profile.day_factor has {sorted(site.profile.day_factor)})"
        )
    for i, s in enumerate(sc.surges, 1):
        for z in s.zones:
            if z not in site.zones:
                problems.append(f"surges entry {i}, field zones: no zone '{z}' on site '{site.info.id}'")
        if s.kind is not None and not any(z.kind == s.kind for z in site.zones.values()):
            problems.append(
                f"surges entry {i}, field kind: site '{site.info.id}' has no zone of kind '{s.kind}'"
            )
    for i, f in enumerate(sc.faults, 1):
        try:
            fault_sensor(f, site)
        except KeyError as e:
            problems.append(f"faults entry {i}, field {'sensor' if f.sensor else 'pick'}: {e.args[0]}")
    if problems:
        raise ScenarioError(sc.path, problems)


def surge_zones(surge: Surge, site: Site) -> list[str]:
    if surge.all:
        return list(site.zones)
    if surge.kind is not None:
        return [z.id for z in site.zones.values() if z.kind == surge.kind]
    return list(surge.zones)


def fault_sensor(fault: Fault, site: Site) -> str:
    """The sensor id a fault applies to on this site; KeyError with a reason if there is none."""
    if fault.sensor:
        if fault.sensor not in site.sensors:
            raise KeyError(f"no sensor '{fault.sensor}' on site '{site.info.id}'")
        return fault.sensor
    pick = fault.pick or SensorPick()
    found = [
        s.id
        for s in site.sensors.values()
        if s.kind == pick.kind and (pick.mode is None or (s.kind == "counter" and s.mode == pick.mode))
    ]
    if not found:
        mode = f" in {pick.mode} mode" if pick.mode else ""
        raise KeyError(f"site '{site.info.id}' has no {pick.kind} sensor{mode}")
    return found[pick.index % len(found)]
