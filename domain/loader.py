"""Load a site file strictly: every error names the file, the item and the field, and says what to do."""

from __future__ import annotations

import math
import re
import tomllib
from importlib import resources
from pathlib import Path

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
    try:
        spec = msgspec.convert(data, SiteFile, strict=True)
    except msgspec.ValidationError as e:
        raise SiteError(path, [_explain(str(e), data)]) from e
    problems = check_references(spec)
    if problems:
        raise SiteError(path, problems)
    return Site(spec, path)


_PATH_RE = re.compile(r"\$\.(\w+)\[(\d+)\](.*)")


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
    problems: list[str] = []
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
        if z.dwell_min <= 0:
            problems.append(f"{where}, field dwell_min: must be positive minutes, got {z.dwell_min}")
        if z.shape not in spec.profile.shapes:
            problems.append(f"{where}, field shape: no shape '{z.shape}' in [profile.shapes]")
        if len(z.polygon) < 3:
            problems.append(f"{where}, field polygon: needs at least 3 points")
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
        if s.interval_s <= 0:
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
    for name, shape in spec.profile.shapes.items():
        for part in ("weekday", "holiday"):
            knots = getattr(shape, part)
            hours = [h for h, _ in knots]
            if not knots or hours != sorted(hours) or hours[0] < 0 or hours[-1] > 24:
                problems.append(f"profile.shapes '{name}', field {part}: hours must rise within 0..24")
            if any(w < 0 for _, w in knots) or not any(w > 0 for _, w in knots):
                problems.append(f"profile.shapes '{name}', field {part}: weights must be >= 0, not all zero")
    return problems


def _check_thresholds(where: str, t: object) -> list[str]:
    from domain.site import Thresholds

    assert isinstance(t, Thresholds)
    out = []
    if list(t.share) != sorted(t.share) or t.share[0] <= 0:
        out.append(f"{where}, field share: must rise from IV to I and be positive, got {list(t.share)}")
    if list(t.density) != sorted(t.density) or t.density[0] <= 0:
        out.append(f"{where}, field density: must rise from IV to I and be positive, got {list(t.density)}")
    if not (0 <= t.hysteresis < 0.5):
        out.append(f"{where}, field hysteresis: must be within 0..0.5, got {t.hysteresis}")
    return out
