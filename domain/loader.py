"""Load a site file strictly: every error names the file, the item and the field, and says what to do."""

from __future__ import annotations

import ctypes
import math
import re
import sys
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from domain.site import Site, SiteFile

DEFAULT_SITE = "lujiazui"


class SiteError(ValueError):
    """A site file that cannot be used. `problems` lists every problem found, one line each."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the site file:\n{body}")


def default_site_path() -> Path:
    return Path(str(resources.files("domain") / "data" / f"{DEFAULT_SITE}.toml"))


def load_site(path: str | Path | None = None) -> Site:
    p = Path(path) if path is not None else default_site_path()
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SiteError(str(p), [f"cannot read the file ({e.strerror}); check the path"]) from e
    return parse_site(raw, str(p))


def parse_site(raw: bytes | str, path: str = "<memory>") -> Site:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = tomllib.loads(text)  # tomllib only parses data: a site file can never execute code
    except tomllib.TOMLDecodeError as e:
        raise SiteError(path, [f"not valid TOML: {e}"]) from e
    except UnicodeDecodeError as e:
        raise SiteError(path, [f"not UTF-8 text: {e}"]) from e
    except RecursionError as e:  # tomllib recurses once per level of nested arrays and inline tables
        raise SiteError(
            path, ["not valid TOML: arrays or inline tables nested too deep; no setting needs more than a few levels"]
        ) from e
    try:
        spec = msgspec.convert(data, SiteFile, strict=True)
    except msgspec.ValidationError as e:
        raise SiteError(path, [_explain(name_dict_key(str(e), data, SiteFile), data)]) from e
    problems = check_references(spec) or _huge_ints(data)
    if problems:
        raise SiteError(path, problems)
    # The objects the site keeps were made among tomllib's, several times as many, which are now garbage; in
    # the allocator's pools the holes they leave stay around the kept ones (a 50,000-sensor site: 55 MB of
    # arenas for 15 MB of objects). Made again once the parse is gone, the kept objects sit together.
    packed = msgspec.msgpack.encode(spec)
    del data, spec, text
    site = Site(_shared(msgspec.msgpack.decode(packed, type=SiteFile)), path)
    del packed
    _return_freed_memory()
    return site


_INT64 = range(-(2**63), 2**63)


def _huge_ints(node: object, where: str = "") -> list[str]:
    """Integers no count, capacity or id could need (and the site's compact copy cannot hold), by field."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _huge_ints(v, f"{where}.{k}" if where else str(k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _huge_ints(v, f"{where}[{i}]")]
    if isinstance(node, int) and not isinstance(node, bool) and node not in _INT64:
        return [f"field {where}: {node} is out of range (at most 2**63 - 1)"]
    return []


def _return_freed_memory() -> None:
    """Give the C heap's free pages back to the system: the parse's text and tables are freed in the middle of
    the heap, which glibc keeps mapped (a 50,000-sensor site: 25 MB the service would hold for nothing)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Callable[[int], int] | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None)
        trim: Callable[[int], int] = libc.malloc_trim  # glibc only: musl and others have no malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _load_malloc_trim()


def _shared(spec: SiteFile) -> SiteFile:
    """The sensors' repeated values as one object each (decoding makes a string or float per occurrence;
    kinds, modes and directions are literals, which msgspec already shares): zone ids are the zones' own."""
    seen: dict[tuple[type, object], object] = {(str, z.id): z.id for z in spec.zones}
    for s in spec.sensors:
        for name in ("zone", "entrance", "interval_s"):
            value = getattr(s, name)
            msgspec.structs.force_setattr(s, name, seen.setdefault((type(value), value), value))
    return spec


_PATH_RE = re.compile(r"\$\.(\w+)\[(\d+)\](.*)")
_STEP_RE = re.compile(r"\.(\w+)|\[(\d+)\]|\[\.\.\.\]")


def name_dict_key(message: str, data: dict[str, object], typ: type) -> str:
    """msgspec says `$.profile.day_factor[...]` for a bad value in a table of free keys; name the key instead.

    Error path only: each key's value is converted alone until one gives the same error.
    """
    m = re.search(r"`(\$[^`]*)\[\.\.\.\]", message)
    if not m:
        return message
    prefix = m.group(1)
    steps: list[str | int] = [a if a else int(b) for a, b in _STEP_RE.findall(prefix[1:]) if a or b]
    if "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in steps) != prefix[1:]:
        return message
    table: object = data
    for step in steps:
        try:
            table = table[step]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return message
    if not isinstance(table, dict):
        return message
    for key, value in table.items():
        trial = _replace(data, steps, {key: value})
        try:
            msgspec.convert(trial, typ, strict=True)
        except msgspec.ValidationError as e:
            if f"{prefix}[...]" in str(e):
                return message.replace(f"{prefix}[...]", f"{prefix}.{key}", 1)
    return message


def _replace(node: object, steps: list[str | int], value: object) -> object:
    """A copy of `node` with the item at `steps` replaced (only the containers on the way are copied)."""
    if not steps:
        return value
    head, rest = steps[0], steps[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, value)}
    assert isinstance(node, list) and isinstance(head, int)
    return [*node[:head], _replace(node[head], rest, value), *node[head + 1 :]]


def _explain(message: str, data: dict[str, object]) -> str:
    """Turn msgspec's `... - at `$.zones[3].area_m2`` into `zone 'riverside-s3', field area_m2: ...`."""
    m = re.search(r"`(\$[^`]*)`", message)
    if not m:
        return message
    where = m.group(1)
    pm = _PATH_RE.match(where)
    if pm:
        section, idx, rest = pm.group(1), int(pm.group(2)), pm.group(3).lstrip(".")
        items = data.get(section)
        ident = "?"
        if isinstance(items, list) and idx < len(items) and isinstance(items[idx], dict):
            ident = str(items[idx].get("id", f"#{idx + 1}"))
        field = f", field {rest}" if rest else ""
        what = message.split(" - at ")[0]
        return f"{section} '{ident}' (entry {idx + 1}){field}: {what}"
    return message


def check_references(spec: SiteFile) -> list[str]:
    """Cross-checks msgspec cannot do: unique ids, dangling references, physical sense."""
    problems = _check_info(spec)
    for section in ("grids", "micro_grids", "zones", "sensors"):
        seen: set[str] = set()
        for item in getattr(spec, section):
            if item.id in seen:
                problems.append(f"{section} '{item.id}': id used twice; ids must be unique")
            seen.add(item.id)
    grids = {g.id for g in spec.grids}
    micro = {m.id: m for m in spec.micro_grids}
    zones = {z.id: z for z in spec.zones}
    for m in spec.micro_grids:
        if m.grid not in grids:
            problems.append(f"micro_grids '{m.id}', field grid: no grid '{m.grid}'")
    for z in spec.zones:
        where = f"zones '{z.id}'"
        if z.grid not in grids:
            problems.append(f"{where}, field grid: no grid '{z.grid}'")
        mg = micro.get(z.micro_grid)
        if mg is None:
            problems.append(f"{where}, field micro_grid: no micro-grid '{z.micro_grid}'")
        elif mg.grid != z.grid:
            problems.append(f"{where}, field micro_grid: '{z.micro_grid}' belongs to grid '{mg.grid}', not '{z.grid}'")
        if not (math.isfinite(z.area_m2) and z.area_m2 > 0):
            problems.append(f"{where}, field area_m2: must be a positive number of m², got {z.area_m2}")
        if z.capacity <= 0:
            problems.append(f"{where}, field capacity: must be a positive number of people, got {z.capacity}")
        if not (0 <= z.visit_share <= 1):
            problems.append(f"{where}, field visit_share: must be within 0..1, got {z.visit_share}")
        if not (math.isfinite(z.dwell_min) and z.dwell_min > 0):
            problems.append(f"{where}, field dwell_min: must be positive minutes, got {z.dwell_min}")
        if z.shape not in spec.profile.shapes:
            problems.append(f"{where}, field shape: no shape '{z.shape}' in [profile.shapes]")
        if len(z.polygon) < 3:
            problems.append(f"{where}, field polygon: needs at least 3 points")
        if not all(math.isfinite(c) for point in z.polygon for c in point):
            problems.append(f"{where}, field polygon: coordinates must be finite metres")
        for n in z.neighbours:
            if n not in zones:
                problems.append(f"{where}, field neighbours: no zone '{n}'")
            elif n == z.id:
                problems.append(f"{where}, field neighbours: a zone cannot neighbour itself")
            elif z.id not in zones[n].neighbours:
                problems.append(f"{where}, field neighbours: '{n}' does not list '{z.id}' back; add it there")
        if z.kind == "riverside_segment" and z.segment is None:
            problems.append(f"{where}, field segment: riverside segments need their order along the river")
    for s in spec.sensors:
        if s.zone not in zones:
            problems.append(f"sensors '{s.id}', field zone: no zone '{s.zone}'")
        if not (math.isfinite(s.interval_s) and s.interval_s > 0):
            problems.append(f"sensors '{s.id}', field interval_s: must be positive seconds")
    problems += _check_thresholds("thresholds", spec.thresholds)
    for z in spec.zones:
        if z.thresholds is not None:
            problems += _check_thresholds(f"zones '{z.id}', thresholds", z.thresholds)
    total_share = sum(z.visit_share for z in spec.zones)
    if spec.zones and abs(total_share - 1.0) > 1e-6:
        problems.append(f"zones: visit_share must add up to 1.0 over all zones, got {total_share:.6f}")
    for name in ("weekday", "holiday"):
        if name not in spec.profile.day_factor:
            problems.append(f"profile, field day_factor: missing '{name}'")
    for name, factor in spec.profile.day_factor.items():
        if not (math.isfinite(factor) and factor >= 0):
            problems.append(f"profile, field day_factor.{name}: must be a finite number >= 0, got {factor}")
    for name, shape in spec.profile.shapes.items():
        for part in ("weekday", "holiday"):
            knots = getattr(shape, part)
            hours = [h for h, _ in knots]
            if not knots or hours != sorted(hours) or hours[0] < 0 or hours[-1] > 24:
                problems.append(f"profile.shapes '{name}', field {part}: hours must rise within 0..24")
            if not all(math.isfinite(h) and math.isfinite(w) for h, w in knots):
                problems.append(f"profile.shapes '{name}', field {part}: hours and weights must be finite numbers")
            elif any(w < 0 for _, w in knots) or not any(w > 0 for _, w in knots):
                problems.append(f"profile.shapes '{name}', field {part}: weights must be >= 0, not all zero")
    return problems


def _check_info(spec: SiteFile) -> list[str]:
    info, out = spec.site, []
    try:
        ZoneInfo(info.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        out.append(f"site, field timezone: '{info.timezone}' is not a known IANA timezone; write e.g. Asia/Shanghai")
    if info.peak_day_visits <= 0:
        out.append(f"site, field peak_day_visits: must be a positive number of visits, got {info.peak_day_visits}")
    lat, lon = info.origin
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        out.append(f"site, field origin: must be [latitude, longitude] in degrees, got {list(info.origin)}")
    return out


def _check_thresholds(where: str, t: object) -> list[str]:
    from domain.site import Thresholds

    assert isinstance(t, Thresholds)
    out = []
    if not all(math.isfinite(v) for v in (*t.share, *t.density, t.hysteresis, t.min_duration_s)):
        return [f"{where}: every threshold must be a finite number, got {t!r}"]
    if list(t.share) != sorted(t.share) or t.share[0] <= 0:
        out.append(f"{where}, field share: must rise from IV to I and be positive, got {list(t.share)}")
    if list(t.density) != sorted(t.density) or t.density[0] <= 0:
        out.append(f"{where}, field density: must rise from IV to I and be positive, got {list(t.density)}")
    if not (0 <= t.hysteresis < 0.5):
        out.append(f"{where}, field hysteresis: must be within 0..0.5, got {t.hysteresis}")
    if t.min_duration_s < 0:
        out.append(f"{where}, field min_duration_s: must be 0 or more seconds, got {t.min_duration_s}")
    return out
