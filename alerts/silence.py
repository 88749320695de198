"""Silences: an operator mutes matching alerts for a while, with a reason. Pure checks over `Silence` values.

A silenced alert stays on the wall, marked; it is only not pushed (dedup reads `Alert.silenced_by`). Matchers
are exact equality on a few alert properties, all of which must match:

- zone: the alert's zone id; grid, micro_grid: the zone's grid and micro-grid in the site;
- cause: the alert's cause (capacity, density, surge, forecast, stall, counterflow, sensor);
- kind: the zone's kind (riverside_segment, plaza, bridge, metro_exit, ...).

Matchers are checked strictly when a silence is created (`validate_matchers`): a typo would otherwise
silence nothing while the operator believes it silences something, and an empty set would silence the whole
district. A silence also has a `max_level`: an alert worse than that gets through, so silencing the blue
noise of a fireworks night never hides a red.

>>> from domain.loader import load_site
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> validate_matchers({"zone": "seg-1", "cause": "stall"}, site)
{'zone': 'seg-1', 'cause': 'stall'}
>>> validate_matchers({"zone": "seg1"}, site)
Traceback (most recent call last):
...
ValueError: Silence matchers: unknown zone 'seg1' (did you mean 'seg-1' or 'seg-2'? allowed: plaza, seg-1, seg-2)
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from typing import get_args

from alerts.model import Silence
from domain.site import Site, ZoneKind
from domain.values import Alert, Cause

MATCHER_KEYS: tuple[str, ...] = ("zone", "grid", "micro_grid", "cause", "kind")
_NOUNS = {"zone": "zone", "grid": "grid", "micro_grid": "micro-grid", "cause": "cause", "kind": "zone kind"}
_LIST_ALL_UP_TO = 12  # allowed values are listed in full up to this many; beyond, close matches only


def validate_matchers(matchers: Mapping[str, str], site: Site) -> dict[str, str]:
    """The matchers, values stripped of surrounding spaces, if every key and value is known in `site` and they
    can match together; otherwise ValueError naming each bad key or value with the allowed keys or close
    matches. An empty set is an error: it would silence every alert in the district."""
    if not matchers:
        raise ValueError(
            "Silence matchers: none given, and a silence without matchers would silence every alert in the "
            f"district; give at least one of {', '.join(MATCHER_KEYS)}"
        )
    problems: list[str] = []
    clean: dict[str, str] = {}
    for key, value in matchers.items():
        if key not in MATCHER_KEYS:
            problems.append(f"unknown matcher key {key!r}{_hint(str(key), MATCHER_KEYS, 'key', site)}")
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"matcher {key!r} needs a non-empty text value, got {value!r}")
            continue
        v = value.strip()
        allowed = _allowed(key, site)
        if v not in allowed:
            problems.append(f"unknown {_NOUNS[key]} {v!r}{_hint(v, allowed, key, site)}")
            continue
        clean[key] = v
    problems.extend(_contradictions(clean, site))
    if problems:
        raise ValueError("Silence matchers: " + "; ".join(problems))
    return clean


def matches(s: Silence, alert: Alert, site: Site) -> bool:
    """Whether every matcher of `s` holds for `alert` and the alert is not worse than `s.max_level`.

    Time is not looked at (see `Silence.active`). A silence with no matchers, or with a key this version does
    not know, matches nothing: a silence that cannot be understood must not hide alerts.
    """
    if alert.level > s.max_level or not s.matchers:
        return False
    zone = site.zones.get(alert.zone)
    props = {
        "zone": alert.zone,
        "grid": zone.grid if zone is not None else alert.grid,
        "micro_grid": zone.micro_grid if zone is not None else alert.micro_grid,
        "cause": alert.cause,
        "kind": zone.kind if zone is not None else None,
    }
    return all(key in props and props[key] == value for key, value in s.matchers.items())


def silenced_by(alert: Alert, silences: Sequence[Silence], site: Site, now: float) -> str | None:
    """Id of the silence muting `alert` at `now`: the first active matching one, oldest first (starts_at, then
    created_at, then id), so the answer does not depend on how the caller stores silences. None if none."""
    for s in sorted(silences, key=lambda s: (s.starts_at, s.created_at, s.id)):
        if s.active(now) and matches(s, alert, site):
            return s.id
    return None


def expired(silences: Sequence[Silence], now: float) -> list[Silence]:
    """Silences whose time ran out by `now` and that nobody ended by hand, by end time then id.

    The caller audits each expiry once, e.g. by then recording `ended_at = ends_at` with `ended_by = "system"`,
    after which the silence is no longer returned here.
    """
    out = [s for s in silences if s.ended_at is None and s.ends_at <= now]
    return sorted(out, key=lambda s: (s.ends_at, s.id))


def _allowed(key: str, site: Site) -> Collection[str]:
    if key == "zone":
        return site.zones.keys()
    if key == "grid":
        return site.grids.keys()
    if key == "micro_grid":
        return site.micro_grids.keys()
    if key == "cause":
        return get_args(Cause)
    return get_args(ZoneKind)


def _hint(value: str, allowed: Collection[str], key: str, site: Site) -> str:
    """' (did you mean 'x'? allowed: ...)': close matches, and the full list when it is short."""
    options = sorted(allowed) if key in ("zone", "grid", "micro_grid") else list(allowed)
    parts = []
    close = _close(value, options)
    if close:
        parts.append(f"did you mean {' or '.join(repr(c) for c in close)}?")
    if len(options) <= _LIST_ALL_UP_TO:
        parts.append(f"allowed: {', '.join(options)}")
    elif not close:
        parts.append(f"no close match among the {len(options)} {_NOUNS[key]} ids in the site file {site.path}")
    return f" ({' '.join(parts)})"


def _close(value: str, options: Sequence[str]) -> list[str]:
    """Up to three options close to `value`: those it begins first ('rsb-01' -> 'rsb-01-dongchang'), then
    similar spellings, ignoring case ('Capacity' -> 'capacity')."""
    v = value.lower()
    lowered = {o.lower(): o for o in options}
    starts = [o for low, o in lowered.items() if low.startswith(v)]
    similar = [lowered[c] for c in difflib.get_close_matches(v, list(lowered), n=3, cutoff=0.6)]
    return list(dict.fromkeys(starts + similar))[:3]


def _contradictions(m: Mapping[str, str], site: Site) -> list[str]:
    """Valid matchers that can never match together: the silence would match nothing."""
    out: list[str] = []
    why = "this silence would match nothing, so drop one of the two or correct it"
    zone = site.zones.get(m["zone"]) if "zone" in m else None
    if zone is not None:
        for key, actual in (("grid", zone.grid), ("micro_grid", zone.micro_grid), ("kind", zone.kind)):
            if key in m and m[key] != actual:
                out.append(f"zone {zone.id!r} has {key} {actual!r}, not {m[key]!r}: {why}")
    if "micro_grid" in m and "grid" in m:
        mg = site.micro_grids[m["micro_grid"]]
        if mg.grid != m["grid"]:
            out.append(f"micro_grid {mg.id!r} is in grid {mg.grid!r}, not {m['grid']!r}: {why}")
    return out
