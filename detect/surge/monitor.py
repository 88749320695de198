"""Surge monitor: one detector per zone, fed each zone's inflow once per tick, flags turned into Detections.

A surge is inflow well above the usual for the zone, slot and day type. It is graded IV blue when flagged and
III yellow when the score reaches `yellow_at` (0.97 by default), never higher: an unusual inflow says people
are coming, not that the zone is full. Whether it becomes dangerous (II orange, I red) is decided by what the
zone holds (capacity and density grading) and by the time-to-capacity forecast, which both measure the crowd
itself; a surge into a half-empty plaza must not outrank them.

Unhealthy zones are neither scored nor learned (a dead counter reads as zero inflow, which would teach the
model that the slot is quiet); bad values are counted in `rejected` by reason, never raised.

Planned events: `flow_factor(zone_id, ts)` (the engine passes detect.overrides.Overrides.flow_factor) scales
the profile's expectation, so a planned crowd (x3 for the fireworks) is not a surge while an unplanned excess
on top of it still is. While the factor is not 1 the zone's detector scores but never learns: the event's
flow is not the zone's normal, and `learn_guarded` alone would take a planned x3 that scores low for normal.

>>> from domain.loader import load_site
>>> from domain.profile import SLOT_S, CapacityProfile
>>> from domain.values import ZoneState
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> mon = SurgeMonitor(site, CapacityProfile(site), detector="profile_ratio")
>>> def at(inflow):  # 31 Dec 2026 22:15 in Shanghai
...     return ZoneState(zone="seg-1", ts=1798726500.0, occupancy=900, capacity=2000, share=0.45,
...                      density=0.45, inflow_per_min=inflow, outflow_per_min=40, arrivals_today=0)
>>> mon.observe(at(60.0)) is None
True
>>> d = mon.observe(at(120.0))
>>> d.cause, d.level.label
('surge', 'III yellow')
>>> d.message
"Promenade segment 1: inflow 120/min, 3.1× the usual for 22:15 on New Year's Eve"
>>> round(mon.normal("seg-1", 1798726500.0), 1)  # profile_ratio learns nothing: the profile's expectation
38.1
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, cast

from detect.base import Decision, Detector, KnowsNormal, Obs, learn_guarded
from detect.registry import DEFAULT_SURGE, make_detector
from domain.levels import Level
from domain.profile import SLOT_S, CapacityProfile
from domain.site import Site
from domain.values import Detection, ZoneState

SNAPSHOT_VERSION = 1
DEFAULT_DECISION = Decision()  # flag at 0.9, learn only below 0.8
_DAY_WORDS = {"weekday": "a weekday", "holiday": "a holiday", "nye": "New Year's Eve"}


class SurgeMonitor:
    """Per-zone surge scores and flags; state keyed by zone, so it partitions by zone like the tracker."""

    def __init__(
        self,
        site: Site,
        profile: CapacityProfile,
        *,
        detector: str | None = None,
        decision: Decision = DEFAULT_DECISION,
        yellow_at: float = 0.97,
        rate_window_s: float = 300.0,
        flow_factor: Callable[[str, float], float] | None = None,
    ) -> None:
        if not 0.0 <= decision.protect <= decision.threshold <= 1.0:
            raise ValueError(f"need 0 <= protect <= threshold <= 1, got {decision}")
        if not 0.0 < rate_window_s <= SLOT_S:
            raise ValueError(f"rate_window_s must be within (0, {SLOT_S:.0f}] s, got {rate_window_s}")
        self.site = site
        self.profile = profile
        self.detector_name = detector or DEFAULT_SURGE
        self.decision = decision
        self.yellow_at = max(yellow_at, decision.threshold)
        proto = make_detector(self.detector_name)
        self._detectors: dict[str, Detector] = {z: proto.clone() for z in site.zones}
        # Every zone's detector is a clone of one kind: ask once whether it can tell its learned normal.
        self._knows_normal = isinstance(proto, KnowsNormal)
        self.rejected: Counter[str] = Counter()  # reason -> observations not scored; exported as a metric
        self.dropped_zones: list[str] = []  # zones in a restored snapshot that the site no longer has
        self.rate_window_s = rate_window_s
        self.flow_factor = flow_factor
        self._tick: _Tick | None = None  # the calendar of the latest ts: all zones share a tick

    def _calendar(self, ts: float) -> _Tick:
        if self._tick is None or self._tick.ts != ts:
            self._tick = _Tick(self.profile, ts, self.rate_window_s)
        return self._tick

    def obs(self, zone: str, ts: float, inflow: float) -> Obs | None:
        """The observation a zone's detector sees (slot, day type, window-averaged expectation times the planned
        flow factor), or None with the reason counted in `rejected`."""
        x = self._obs(zone, ts, inflow)
        return None if x is None else x[0]

    def _obs(self, zone: str, ts: float, inflow: float) -> tuple[Obs, float] | None:
        """The observation and the planned flow factor it was made with."""
        if zone not in self._detectors:
            self.rejected["unknown_zone"] += 1
            return None
        if not math.isfinite(ts):
            self.rejected["bad_timestamp"] += 1
            return None
        if not (math.isfinite(inflow) and inflow >= 0.0):
            self.rejected["bad_inflow"] += 1
            return None
        cal = self._calendar(ts)
        expected = cal.expected(zone)
        factor = 1.0 if self.flow_factor is None else self.flow_factor(zone, ts)
        if expected is not None:
            expected *= factor
        return Obs(ts=ts, value=inflow, slot=cal.slot, day_type=cal.day_type, expected=expected), factor

    def _score(self, zone: str, x: Obs, factor: float) -> float:
        det = self._detectors[zone]
        if factor != 1.0:
            return det.score_one(x)  # during a planned event: score against the plan, learn nothing
        return learn_guarded(det, x, self.decision)

    def observe(self, state: ZoneState) -> Detection | None:
        """Score one zone's state (call once per tick per zone); a Detection when it is a surge."""
        if not state.healthy:
            self.rejected["unhealthy"] += 1  # sensor health reports it; a blind zone teaches nothing
            return None
        got = self._obs(state.zone, state.ts, state.inflow_per_min)
        if got is None:
            return None
        x, factor = got
        score = self._score(state.zone, x, factor)
        if not self.decision.flagged(score):
            return None
        level = Level.III if score >= self.yellow_at else Level.IV
        expected = x.expected if x.expected is not None else 0.0
        evidence = {"inflow_per_min": x.value, "expected_per_min": expected, "score": score}
        if factor != 1.0:
            evidence["flow_factor"] = factor
        return Detection(
            zone=state.zone,
            ts=state.ts,
            level=level,
            cause="surge",
            score=score,
            evidence=evidence,
            message=self._message(state.zone, x, expected, factor),
        )

    def _message(self, zone: str, x: Obs, expected: float, factor: float = 1.0) -> str:
        name = self.site.zones[zone].name_en
        hhmm = f"{x.slot // 4:02d}:{x.slot % 4 * 15:02d}"  # the slot's start: "the usual for 22:15"
        day = _DAY_WORDS.get(x.day_type, f"a {x.day_type} day")
        if expected < 0.05:
            return f"{name}: inflow {x.value:,.0f}/min where almost none is usual for {hhmm} on {day}"
        usual = "the usual" if factor == 1.0 else f"the planned (x{factor:g} the usual)"
        return f"{name}: inflow {x.value:,.0f}/min, {x.value / expected:.1f}× {usual} for {hhmm} on {day}"

    def normal(self, zone: str, ts: float) -> float | None:
        """The zone's normal inflow per minute at `ts`, for the wall's chart: what its detector has learned
        as usual (the profile's expectation moved by the zone's learned offset) when the detector can say,
        else the profile's expectation; times the planned flow factor during a planned event, as the
        detector is scored. None for an unknown zone, a bad ts or a day type the profile does not have.
        Changes nothing and counts nothing: it may be asked for zones that `observe` refuses (unhealthy)."""
        det = self._detectors.get(zone)
        if det is None or not math.isfinite(ts):
            return None
        cal = self._calendar(ts)
        expected = cal.expected(zone)
        if expected is None:
            return None
        if self.flow_factor is not None:
            expected *= self.flow_factor(zone, ts)
        if self._knows_normal:
            x = Obs(ts=ts, value=expected, slot=cal.slot, day_type=cal.day_type, expected=expected)
            learned = cast(KnowsNormal, det).normal(x)
            if learned is not None:
                return float(learned)
        return expected

    def warm(self, rows: Iterable[tuple[str, float, float]]) -> int:
        """Learn from stored history rows (zone, ts, inflow_per_min), oldest first, guarded as live data is
        (rows inside a known planned event are skipped). Returns how many rows were learned from; unusable
        rows are counted in `rejected`."""
        learned = 0
        for zone, ts, inflow in rows:
            got = self._obs(zone, float(ts), float(inflow))
            if got is None:
                continue
            x, factor = got
            if factor == 1.0 and learn_guarded(self._detectors[zone], x, self.decision) < self.decision.protect:
                learned += 1
        return learned

    def detector(self, zone: str) -> Detector:
        """The zone's detector (read-only use: benchmarks and the dashboard's explanation)."""
        return self._detectors[zone]

    # ---- restart --------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Plain JSON-able dict of every zone's learned state."""
        return {
            "version": SNAPSHOT_VERSION,
            "detector": self.detector_name,
            "zones": {z: d.to_state() for z, d in self._detectors.items()},
            "rejected": dict(self.rejected),
        }

    def from_state(self, data: dict[str, Any]) -> None:
        """Restore in place from to_state(). ValueError on a snapshot that does not fit (another version or
        detector, damaged zone state), leaving the monitor as it was. Zones the site no longer has are
        listed in `dropped_zones`; zones new to the site start fresh."""
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise ValueError(f"surge snapshot version {version!r} is not {SNAPSHOT_VERSION}; start afresh")
        if data.get("detector") != self.detector_name:
            raise ValueError(
                f"surge snapshot was learned by {data.get('detector')!r}, this monitor runs "
                f"{self.detector_name!r}; start afresh or warm from history"
            )
        proto = make_detector(self.detector_name)
        fresh = {z: proto.clone() for z in self.site.zones}
        try:
            zones = data["zones"]
            for zid, st in zones.items():
                if zid in fresh:
                    fresh[zid].from_state(st)
            rejected = Counter({str(k): int(v) for k, v in data.get("rejected", {}).items()})
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"surge snapshot does not fit: {type(e).__name__}: {e}") from e
        self._detectors, self.rejected = fresh, rejected
        self.dropped_zones = [z for z in zones if z not in fresh]


class _Tick:
    """Slot, day type and the profile's expectation at one ts, averaged over the trailing rate window: the
    tracker's inflow is counted over the last 5 minutes, so just after a slot boundary (the malls closing at
    22:00) most of it still belongs to the slot before, and so must the expectation it is held against."""

    __slots__ = ("_cur", "_frac", "_pos", "_prev", "day_type", "slot", "ts")

    def __init__(self, profile: CapacityProfile, ts: float, window_s: float) -> None:
        self.ts = ts
        self.slot = profile.slot_of(ts)
        self.day_type = profile.day_type_of(ts)
        self._pos = profile.zone_pos
        self._cur = self._column(profile, self.day_type, self.slot)
        into_slot = ts - profile.local_midnight(ts) - self.slot * SLOT_S
        self._frac = min(1.0, max(0.0, into_slot / window_s))
        self._prev = self._cur
        if self._frac < 1.0:
            t0 = ts - window_s
            self._prev = self._column(profile, profile.day_type_of(t0), profile.slot_of(t0))

    @staticmethod
    def _column(profile: CapacityProfile, day_type: str, slot: int) -> list[float] | None:
        if day_type not in profile.day_factor:
            return None
        return [float(v) / 15.0 for v in profile.arrivals(day_type)[:, slot]]

    def expected(self, zone: str) -> float | None:
        """Expected arrivals per minute into the zone over the window; None if the profile has no such day."""
        if self._cur is None or self._prev is None:
            return None
        i = self._pos[zone]
        return self._frac * self._cur[i] + (1.0 - self._frac) * self._prev[i]
