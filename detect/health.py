"""Sensor health as its own class of detection: offline, stuck, implausible and drifting sensors.

A zone with an unhealthy sensor has an estimate nobody should trust: `zone_health` is then False and the
zone is shown as unknown, never as calm. Each problem says what to do about it.

* offline: no data for `offline_intervals` of the sensor's reporting interval (by arrival time, `received_at`
  against `now`); a sensor never heard from counts from the first reading this monitor received. A device's
  own "offline" status counts too.
* stuck: a counter repeating the same nonzero count `stuck_intervals` times in a row (live counts are never
  that regular); or a zero count, or a frozen area count or density, repeated as often while the zone's
  other sensors or those of neighbouring zones move, and the capacity profile expects at least 30 people
  through it meanwhile (a closed mall next to a busy promenade, or a quiet zone at night, reads zero).
* implausible: a negative value, a saturated one (4095, 65535: a register's maximum) that is not close to the
  sensor's previous value (a real count can be 4095; a jump to it from 1,200 is not), a count above what the
  entrance could pass (`max_rate_per_s`, 100 people/s), an area count above `max_jump_factor` × capacity or
  jumping faster than every entrance at full rate could explain, a density above `max_density` (10 p/m²),
  or the device reporting a fault. It clears after `offline_intervals` good readings in a row.
* drifting: for zone kinds that empty at night, occupancy (from `observe_zone`) whose minimum between 02:00
  and 05:00 local stayed above `drift_share` of capacity: counters that integrate a small bias drift away.
  It clears when the occupancy next falls to that share or below.

>>> from domain.loader import load_site
>>> from domain.values import Reading
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> h = SensorHealth(site)
>>> for i, n in enumerate([40, 4095]):
...     h.apply(Reading(sensor="seg2-gate", zone="seg-2", kind="flow", ts=1e9 + 60 * i, seq=i, interval_s=60,
...                     inflow=n), received_at=1e9 + 60 * i)
>>> [(p.sensor, p.kind) for p in h.check(1e9 + 60) if p.zone == "seg-2"]
[('seg2-gate', 'implausible')]
>>> h.zone_health("seg-2", 1e9 + 60), h.zone_health("plaza", 1e9 + 60)
(False, True)
"""

from __future__ import annotations

import datetime as dt
import math
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from detect.durations import how_long
from domain.levels import Level
from domain.profile import CapacityProfile
from domain.site import Sensor, Site, ZoneKind
from domain.values import Detection, Reading, ZoneState

ProblemKind = Literal["offline", "stuck", "implausible", "drifting"]
PROBLEM_KINDS: tuple[ProblemKind, ...] = ("offline", "stuck", "implausible", "drifting")
# Kinds that empty overnight (residential areas do not; offices and malls close).
EMPTIES_AT_NIGHT: frozenset[ZoneKind] = frozenset(
    {"riverside_segment", "plaza", "bridge", "metro_exit", "mall", "office", "street", "park"}
)
_MOVES_NEEDED = 3  # movements by the other sensors while one repeats, to call it stuck
_NEVER = -math.inf  # the time of a movement that has not happened
_MIN_EXPECTED = 30.0  # people the profile expects through a sensor while it repeats; fewer: a zero is plausible
_SATURATION_JUMP = 0.25  # a saturation value this far from the sensor's previous value is not a real count
_NIGHT = (2, 5)  # local hours of the overnight minimum
_NIGHT_COVER_S = 1.5 * 3600  # the night must be observed for at least half its span to be judged


class SensorProblem(msgspec.Struct, frozen=True, kw_only=True):
    sensor: str  # empty for a zone-level problem (drifting)
    zone: str
    kind: ProblemKind
    since: float  # event time (offline: arrival time of the last data)
    detail: str  # what was seen and what to do
    summary: str = ""  # a few words for the wall's health panel: "offline: no data for 6 min"


class _Columns:
    """Every sensor's memory, one typed column per field, at the sensor's site index (allocated with the site:
    about 90 bytes a sensor, where an object per sensor with its boxed numbers, value tuple and dict entry took
    about 330). What only a troubled sensor has (an implausible value, a device-reported offline) is kept in
    dicts by index while it lasts."""

    __slots__ = (
        "bad",
        "good_after_bad",
        "last_rx",
        "last_ts",
        "move1",
        "move2",
        "move3",
        "nv",
        "repeat_count",
        "repeat_since",
        "status",
        "v0",
        "v1",
    )

    def __init__(self, n: int) -> None:
        nan = array("d", [math.nan]) * n
        self.last_rx = nan  # arrival time of the newest data reading; NaN: none yet
        self.last_ts = array("d", nan)  # event time of the newest data reading; NaN: none yet
        # The last value shown: nv numbers (0: none yet; a flow has 2, in and out), v0 and v1 as floats (every
        # count the decoder lets through is below 2**53, so a float holds it exactly and compares the same).
        self.nv = bytearray(n)
        self.v0 = array("d", [0.0]) * n
        self.v1 = array("d", [0.0]) * n
        self.repeat_count = array("q", [0]) * n
        self.repeat_since = array("d", [0.0]) * n
        # Event times of its last three readings that showed movement, newest first (strictly decreasing:
        # only a reading newer than the last one counts). Whether the sensors around one moved at least
        # _MOVES_NEEDED (3) times since some time needs no more than each one's last three.
        never = array("d", [_NEVER]) * n
        self.move1, self.move2, self.move3 = never, array("d", never), array("d", never)
        self.bad: dict[int, tuple[float, str]] = {}  # (since, detail) of an implausible value
        self.good_after_bad: dict[int, int] = {}  # good readings in a row since, while bad
        self.status: dict[int, tuple[float, str]] = {}  # device-reported offline: (ts, detail)


class _Sensor:
    """One sensor's memory as seen through the columns (made for a sensor being judged, not kept)."""

    __slots__ = ("_c", "at", "i", "interval_s", "kind", "sid", "zone")

    def __init__(self, cols: _Columns, i: int, sensor: Sensor, at: int) -> None:
        self._c, self.i = cols, i
        self.sid, self.zone, self.kind, self.interval_s = sensor.id, sensor.zone, sensor.kind, sensor.interval_s
        self.at = at  # position in its zone's neighbourhood (_Hood), to leave itself out of "the others"

    @property
    def last_rx(self) -> float | None:
        v = self._c.last_rx[self.i]
        return None if v != v else v

    @property
    def last_ts(self) -> float | None:
        v = self._c.last_ts[self.i]
        return None if v != v else v

    @property
    def last_value(self) -> tuple[float, ...] | None:
        c, i = self._c, self.i
        nv = c.nv[i]
        return None if not nv else (c.v0[i],) if nv == 1 else (c.v0[i], c.v1[i])

    @property
    def repeat_count(self) -> int:
        return self._c.repeat_count[self.i]

    @property
    def repeat_since(self) -> float:
        return self._c.repeat_since[self.i]

    @property
    def move1(self) -> float:
        return self._c.move1[self.i]

    @property
    def move2(self) -> float:
        return self._c.move2[self.i]

    @property
    def move3(self) -> float:
        return self._c.move3[self.i]

    @property
    def bad(self) -> tuple[float, str] | None:
        return self._c.bad.get(self.i)

    @property
    def status(self) -> tuple[float, str] | None:
        return self._c.status.get(self.i)

    def moves_since(self, t: float) -> int:
        """Its movements at or after t, counting at most the last three."""
        c, i = self._c, self.i
        return (c.move1[i] >= t) + (c.move2[i] >= t) + (c.move3[i] >= t)


class _Hood:
    """The sensors of a zone and of its neighbouring zones, in site order: "the others" of each sensor of the
    zone (less itself) when deciding it is stuck. One per zone, shared by the zone's sensors, so the whole
    structure grows with sensors × (1 + neighbours per zone), not with the square of the sensors. Holds the
    sensors' site indices.

    The first movers after a time come from records of the neighbourhood's newest movements, rebuilt at most
    once per batch of movements (in practice once per tick, and only for a neighbourhood with a sensor that
    repeats itself long enough to be suspect): one pass over the neighbourhood, then a bisection per sensor
    asked about, where scanning every neighbour's movements for each suspect was quadratic.
    """

    __slots__ = ("_pos", "_tops", "_version", "members", "reads")
    _K = _MOVES_NEEDED + 1  # movers to find: up to three others, and the sensor asking may be one of them

    def __init__(self, members: array[int]) -> None:
        self.members = members
        self._version = -1  # of SensorHealth's movement count when the records below were made
        # Record r: at position _pos[r] in site order, the prefix's k-th newest latest-movement time became
        # _tops[k][r] (non-decreasing in r for each k).
        self._pos: list[int] = []
        self._tops: tuple[list[float], ...] = ()
        self.reads = 0  # sensor entries read by rebuilds: the work, counted (a test keeps it linear)

    def _rebuild(self, version: int, move1: array[float]) -> None:
        k = self._K
        best = [_NEVER] * k  # the prefix's k newest latest-movement times, newest first
        floor = _NEVER  # best[-1]: only a sensor that moved later than this changes the records
        pos: list[int] = []
        tops: tuple[list[float], ...] = tuple([] for _ in range(k))
        for i, m in enumerate(self.members):
            v = move1[m]
            if v > floor:
                j = k - 1
                while j > 0 and best[j - 1] < v:
                    best[j] = best[j - 1]
                    j -= 1
                best[j] = v
                floor = best[-1]
                pos.append(i)
                for n in range(k):
                    tops[n].append(best[n])
        self._pos, self._tops, self._version = pos, tops, version
        self.reads += len(self.members)

    def movers(self, since: float, skip: int, version: int, move1: array[float]) -> list[int]:
        """Positions, in site order, of the first (up to three) sensors other than the one at `skip` whose
        latest movement is at or after `since`."""
        if version != self._version:
            self._rebuild(version, move1)
        out: list[int] = []
        for tops in self._tops:
            r = bisect_left(tops, since)
            if r == len(tops):
                break  # fewer movers than that
            p = self._pos[r]
            if p != skip:
                out.append(p)
                if len(out) == _MOVES_NEEDED:
                    break
        return out


class _Night:
    __slots__ = ("first", "key", "last", "min_occ", "min_share")

    def __init__(self, key: dt.date, ts: float) -> None:
        self.key = key
        self.first = self.last = ts
        self.min_share = math.inf
        self.min_occ = math.inf


class SensorHealth:
    """Per-sensor health from readings, per-zone drift from the tracker's states; keyed by sensor and zone."""

    def __init__(
        self,
        site: Site,
        *,
        offline_intervals: int = 3,
        stuck_intervals: int = 10,
        saturation_values: tuple[int, ...] = (4095, 65535),
        max_jump_factor: float = 3.0,
        max_rate_per_s: float = 100.0,
        max_density: float = 10.0,
        drift_share: float = 0.2,
    ) -> None:
        if offline_intervals < 1 or stuck_intervals < 2:
            raise ValueError("offline_intervals must be >= 1 and stuck_intervals >= 2")
        self.site = site
        self.tz = ZoneInfo(site.info.timezone)
        self.profile = CapacityProfile(site)
        self.offline_intervals = offline_intervals
        self.stuck_intervals = stuck_intervals
        self.saturation_values = frozenset(saturation_values)
        self.max_jump_factor = max_jump_factor
        self.max_rate_per_s = max_rate_per_s
        self.max_density = max_density
        self.drift_share = drift_share
        self.rejected: Counter[str] = Counter()  # reason -> readings that could not be attributed
        self.started: float | None = None  # first arrival (or check): silence of never-heard sensors counts from here
        self._nights: dict[str, _Night] = {}
        self._drift: dict[str, tuple[float, str, str]] = {}  # zone -> (since, detail, summary)
        self._moves = 0  # movements seen so far: a neighbourhood's records are rebuilt when this changed
        of_zone: dict[str, list[str]] = {z: [] for z in site.zones}  # each zone's sensors, in site order
        for s in site.sensors.values():
            of_zone[s.zone].append(s.id)
        index = self._index = site.index
        self._site_sensors: list[Sensor] = list(site.sensors.values())
        self._zone_of: list[str] = [s.zone for s in self._site_sensors]
        self._c = _Columns(len(self._site_sensors))
        hood_ids = _neighbourhoods(site, of_zone)
        self._at = array("i", [0]) * len(self._site_sensors)  # position in its zone's neighbourhood
        for zid, ids in hood_ids.items():
            for pos, sid in enumerate(ids):
                if site.sensors[sid].zone == zid:
                    self._at[index[sid]] = pos
        shared: dict[int, _Hood] = {}  # zones with the same neighbourhood share one
        self._hoods: dict[str, _Hood] = {}
        for zid, ids in hood_ids.items():
            if id(ids) not in shared:
                shared[id(ids)] = _Hood(array("i", [index[sid] for sid in ids]))
            self._hoods[zid] = shared[id(ids)]
        # Per zone, its sensors' site indices in site order, for the checks on every tick.
        self._zone_sensors = {z: array("i", [index[sid] for sid in ids]) for z, ids in of_zone.items()}
        self._counter_ids = {
            z: tuple(sid for sid in ids if site.sensors[sid].kind == "counter") for z, ids in of_zone.items()
        }
        self._counters = {z: len(ids) for z, ids in self._counter_ids.items()}
        self._views: dict[str, _Sensor] | None = None

    @property
    def _sensors(self) -> dict[str, _Sensor]:
        """Sensor id -> a view of its memory (made on first use, for tests and debugging; the checks make
        views only of sensors they judge, the same ones once this exists)."""
        if self._views is None:
            self._views = {sid: self._view(i) for sid, i in self._index.items()}
        return self._views

    def _view(self, i: int) -> _Sensor:
        if self._views is not None:
            return self._views[self._site_sensors[i].id]
        return _Sensor(self._c, i, self._site_sensors[i], self._at[i])

    def neighbourhood_entries(self) -> int:
        """Sensor entries held by the neighbourhood structure: grows with sensors × (1 + neighbours per
        zone), never with the square of the sensors (a test holds this)."""
        return sum(len(h.members) for h in self._distinct_hoods())

    def neighbourhood_reads(self) -> int:
        """Sensor entries read so far to find who moved around a repeating sensor (the stuck check's work)."""
        return sum(h.reads for h in self._distinct_hoods())

    def _distinct_hoods(self) -> list[_Hood]:
        return list({id(h): h for h in self._hoods.values()}.values())

    # ---- input ----------------------------------------------------------------------------------

    def apply(self, r: Reading, received_at: float) -> None:
        """Take one reading. Readings of sensors the site does not know are counted in `rejected`."""
        i = self._index.get(r.sensor)
        if i is None:
            self.rejected["unknown_sensor"] += 1
            return
        if self._zone_of[i] != r.zone:
            self.rejected["zone_mismatch"] += 1
            return
        if self.started is None or received_at < self.started:
            self.started = received_at
        c = self._c
        kind = r.kind
        if kind == "status":
            if r.status == "offline":
                c.status[i] = (r.ts, r.detail)
            elif r.status == "fault":
                self._mark_bad(i, r.ts, "the device reports a fault" + (f" ({r.detail})" if r.detail else ""))
                c.status.pop(i, None)
            elif c.status:
                c.status.pop(i, None)
            return
        last_rx = c.last_rx[i]
        if not last_rx >= received_at:  # none yet (NaN), or older
            c.last_rx[i] = received_at
        if c.status:
            c.status.pop(i, None)  # data flows again, whatever the device last said
        problem = self._implausible(r, i)
        if problem:
            self._mark_bad(i, r.ts, problem)
        elif c.bad and i in c.bad:
            good = c.good_after_bad[i] = c.good_after_bad[i] + 1
            if good >= self.offline_intervals:
                del c.bad[i], c.good_after_bad[i]
        ts = r.ts
        if ts <= c.last_ts[i]:  # False while there is none (NaN)
            return  # late or repeated: counts as data, but says nothing about what the sensor shows now
        # The value as sent, as one or two floats (exact for every count the decoder lets through).
        nv = c.nv[i]
        if kind == "flow":
            v0, v1, n = float(r.inflow), float(r.outflow), 2
            moved = r.inflow + r.outflow > 0
        else:
            v0, v1, n = _value(r), 0.0, 1
            moved = not (nv == 1 and v0 == c.v0[i])
        if moved:
            c.move3[i], c.move2[i], c.move1[i] = c.move2[i], c.move1[i], ts
            self._moves += 1
        if nv == n and v0 == c.v0[i] and (n == 1 or v1 == c.v1[i]):
            c.repeat_count[i] += 1
        else:
            c.repeat_count[i], c.repeat_since[i] = 1, ts
        c.nv[i], c.v0[i], c.v1[i], c.last_ts[i] = n, v0, v1, ts

    def _mark_bad(self, i: int, ts: float, detail: str) -> None:
        bad = self._c.bad.get(i)
        self._c.bad[i] = (bad[0] if bad is not None else ts, detail)
        self._c.good_after_bad[i] = 0

    def _implausible(self, r: Reading, i: int) -> str:
        c = self._c
        if r.kind == "flow":
            fin, fout = r.inflow, r.outflow
            sat = self.saturation_values
            if fin < 0 or fout < 0 or fin in sat or fout in sat:  # rare: then the checks in their order
                for name, v in (("in", fin), ("out", fout)):
                    if v < 0:
                        return f"negative count ({name} {v})"
                    was = (c.v0[i] if name == "in" else c.v1[i]) if c.nv[i] else None
                    if v in sat and self._jumped(v, was):
                        return f"saturated count ({name} {v}, a register's maximum)"
            interval = r.interval_s if r.interval_s > 0 else self._site_sensors[i].interval_s  # the site's
            most = fout if fout > fin else fin
            rate = most / (interval if interval > 1.0 else 1.0)
            if rate > self.max_rate_per_s:
                return (
                    f"{most:,} people in {interval:g} s ({rate:,.0f}/s), more than one "
                    f"entrance can pass ({self.max_rate_per_s:g}/s)"
                )
        elif r.kind == "occupancy":
            zone = self.site.zones[r.zone]
            cnt = r.count
            if cnt is None or cnt < 0:
                return f"negative or missing count ({cnt})"
            prev = c.v0[i] if c.nv[i] else None
            if cnt in self.saturation_values and self._jumped(cnt, prev):
                return f"saturated count ({cnt}, a register's maximum)"
            if cnt > self.max_jump_factor * zone.capacity:
                return f"count {cnt:,} is over {self.max_jump_factor:g} × the zone's capacity ({zone.capacity:,})"
            last_ts = c.last_ts[i]
            if prev is not None and r.ts > last_ts:  # False without a last reading (NaN)
                limit = self.max_rate_per_s * max(2, self._counters[r.zone]) * (r.ts - last_ts)
                if abs(cnt - prev) > limit:
                    return f"count jumped from {prev:,.0f} to {cnt:,} in {r.ts - last_ts:g} s"
        elif r.kind == "density":
            d = r.density
            if d is None or not math.isfinite(d) or d < 0:
                return f"negative or missing density ({d})"
            if d > self.max_density:
                return f"density {d:g} p/m² is above anything physically possible ({self.max_density:g})"
        return ""

    @staticmethod
    def _jumped(v: int, prev: float | None) -> bool:
        # Without a previous value there is nothing to tell a register's maximum from a real count by.
        return prev is not None and abs(v - prev) > _SATURATION_JUMP * v

    def observe_zone(self, state: ZoneState) -> None:
        """The tracker's state of a zone on a tick: its overnight minimum reveals drifting counters."""
        zone = self.site.zones.get(state.zone)
        if zone is None or zone.kind not in EMPTIES_AT_NIGHT or not math.isfinite(state.share):
            return
        drift = self._drift.get(state.zone)
        if drift is not None and state.share <= self.drift_share:
            del self._drift[state.zone]  # back near empty: the counters agree with reality again
        local = dt.datetime.fromtimestamp(state.ts, self.tz)
        night = self._nights.get(state.zone)
        in_night = _NIGHT[0] <= local.hour < _NIGHT[1]
        if night is not None and (not in_night or local.date() != night.key):
            self._judge(state.zone, night)
            night = None
            del self._nights[state.zone]
        if in_night:
            if night is None:
                night = self._nights[state.zone] = _Night(local.date(), state.ts)
            night.last = max(night.last, state.ts)
            if state.share < night.min_share:
                night.min_share, night.min_occ = state.share, state.occupancy

    def _judge(self, zone_id: str, night: _Night) -> None:
        if night.last - night.first < _NIGHT_COVER_S:
            return  # not watched long enough to say
        if night.min_share > self.drift_share:
            zone = self.site.zones[zone_id]
            counters = ", ".join(self._counter_ids[zone_id]) or "none"
            self._drift[zone_id] = (
                night.last,
                f"occupancy never fell below {night.min_share:.0%} of capacity ({night.min_occ:,.0f} / "
                f"{zone.capacity:,}) between {_NIGHT[0]:02d}:00 and {_NIGHT[1]:02d}:00, when this {zone.kind} "
                f"empties; its counters ({counters}) are drifting: recalibrate them and reset the zone's "
                "occupancy from a head count or an area sensor",
                f"drifting: never below {night.min_share:.0%} of capacity overnight",
            )
        elif zone_id in self._drift:
            del self._drift[zone_id]

    # ---- output ---------------------------------------------------------------------------------

    def check(self, now: float) -> list[SensorProblem]:
        """Every current problem, zone by zone in site order."""
        if self.started is None:
            self.started = now
        return [p for zid in self.site.zones for p in self._zone_problems(zid, now)]

    def zone_health(self, zone_id: str, now: float) -> bool:
        """False when a problem makes the zone's estimate unreliable: show it as unknown, not calm."""
        return not self.zone_problems(zone_id, now)

    def zone_problems(self, zone_id: str, now: float) -> list[SensorProblem]:
        """The zone's problems now; any one makes the zone unhealthy."""
        if self.started is None:
            self.started = now
        return self._zone_problems(zone_id, now)

    def issues(self, problems: Iterable[SensorProblem]) -> dict[str, str]:
        """Sensor id -> the summaries of its problems ("; "-joined), for the wall's health panel. A
        zone-level problem (drifting) is listed under each of the zone's counters (they are what drifts),
        or under the zone's id when it has none."""
        out: dict[str, str] = {}
        for p in problems:
            text = p.summary or f"{p.kind}: {p.detail}"
            keys = [p.sensor] if p.sensor else list(self._counter_ids[p.zone]) or [p.zone]
            for k in keys:
                out[k] = f"{out[k]}; {text}" if k in out else text
        return out

    def detections(self, now: float) -> list[Detection]:
        """One IV blue 'sensor' detection per zone with problems."""
        out = []
        by_zone: dict[str, list[SensorProblem]] = {}
        for p in self.check(now):
            by_zone.setdefault(p.zone, []).append(p)
        for zid, probs in by_zone.items():
            zone = self.site.zones[zid]
            total = len(self._zone_sensors[zid])
            bad = len({p.sensor for p in probs if p.sensor})
            kinds = Counter(p.kind for p in probs)
            listed = "; ".join(f"{p.sensor or 'zone'} {p.kind}: {p.detail}" for p in probs)
            out.append(
                Detection(
                    zone=zid,
                    ts=now,
                    level=Level.IV,
                    cause="sensor",
                    score=1.0 if total == 0 else min(1.0, max(bad, 1) / total),
                    evidence={"bad_sensors": float(bad), "sensors": float(total)}
                    | {k: float(kinds[k]) for k in PROBLEM_KINDS if kinds[k]},
                    message=f"{zone.name_en}: {bad} of {total} sensors unhealthy, level unknown (not calm). {listed}",
                )
            )
        return out

    def _zone_problems(self, zone_id: str, now: float) -> list[SensorProblem]:
        out = []
        started, stuck_after = self.started, self.stuck_intervals
        offline_after = self.offline_intervals
        c = self._c
        last_rx, repeat_count, interval_of = c.last_rx, c.repeat_count, self._site_sensors
        for i in self._zone_sensors[zone_id]:
            # Most sensors are fine: skip them without building anything (the full checks say the same).
            ref = last_rx[i]
            if ref != ref:  # NaN: never heard from, its silence counts from the start
                ref = started if started is not None else math.nan
            if (
                repeat_count[i] < stuck_after
                and (ref != ref or now - ref <= offline_after * max(interval_of[i].interval_s, 1.0))
                and not (c.status and i in c.status)
                and not (c.bad and i in c.bad)
            ):
                continue
            out.extend(self._sensor_problems(zone_id, self._view(i), now))
        drift = self._drift.get(zone_id)
        if drift is not None:
            out.append(
                SensorProblem(
                    sensor="", zone=zone_id, kind="drifting", since=drift[0], detail=drift[1], summary=drift[2]
                )
            )
        return out

    def _sensor_problems(self, zone_id: str, m: _Sensor, now: float) -> list[SensorProblem]:
        sid, kind = m.sid, m.kind
        out = []
        interval = max(m.interval_s, 1.0)
        ref = m.last_rx if m.last_rx is not None else self.started
        if m.status is not None:
            why = f" ({m.status[1]})" if m.status[1] else ""
            out.append(
                SensorProblem(
                    sensor=sid,
                    zone=zone_id,
                    kind="offline",
                    since=m.status[0],
                    detail=f"the device reported itself offline at {self._clock(m.status[0])}{why}; "
                    "check its power and network",
                    summary=f"offline: reported by the device{why}",
                )
            )
        elif ref is not None and now - ref > self.offline_intervals * interval:
            n = int((now - ref) // interval)
            last = f"last {self._clock(ref)}" if m.last_rx is not None else f"never heard from since {self._clock(ref)}"
            out.append(
                SensorProblem(
                    sensor=sid,
                    zone=zone_id,
                    kind="offline",
                    since=ref,
                    detail=f"no data for {n} intervals ({last}); check the device's power and network",
                    summary=f"offline: no data for {how_long(now - ref)}"
                    + ("" if m.last_rx is not None else " (never heard from)"),
                )
            )
        if m.bad is not None:
            out.append(
                SensorProblem(
                    sensor=sid,
                    zone=zone_id,
                    kind="implausible",
                    since=m.bad[0],
                    detail=f"{m.bad[1]}; its data is ignored until it reads sensibly again: "
                    "check the device's configuration and firmware",
                    summary=f"implausible: {m.bad[1]}",
                )
            )
        stuck = self._stuck(zone_id, m, kind, now)
        if stuck:
            shown = _show(m.last_value, kind) if m.last_value is not None else "?"
            out.append(
                SensorProblem(
                    sensor=sid,
                    zone=zone_id,
                    kind="stuck",
                    since=m.repeat_since,
                    detail=stuck,
                    summary=f"stuck: reads {shown} {m.repeat_count} times in a row",
                )
            )
        return out

    def _stuck(self, zone_id: str, m: _Sensor, kind: str, now: float) -> str:
        if m.repeat_count < self.stuck_intervals or m.last_value is None:
            return ""
        shown = _show(m.last_value, kind)
        if kind == "counter" and any(v != 0 for v in m.last_value):
            return (
                f"the same count ({shown}) {m.repeat_count} times in a row since {self._clock(m.repeat_since)}; "
                "live counts are never that regular: restart the counter"
            )
        expected = self._expected(zone_id, m.repeat_since, now)
        if kind == "counter":
            expected /= max(1, self._counters[zone_id])
        if expected < _MIN_EXPECTED:
            return ""  # few people expected here now: a zero or an unchanged count is plausible
        hood = self._hoods[zone_id]
        # The first others (site order) that moved since it began repeating; three of them moved 3 times.
        moving = hood.movers(m.repeat_since, m.at, self._moves, self._c.move1)
        moves = (
            _MOVES_NEEDED
            if len(moving) >= _MOVES_NEEDED
            else sum(self._view(hood.members[p]).moves_since(m.repeat_since) for p in moving)
        )
        if moves < _MOVES_NEEDED:
            return ""  # everything around is quiet too: a calm zone, not a stuck sensor
        first = self._site_sensors[hood.members[moving[0]]].id
        more = " and others" if len(moving) > 1 else ""
        return (
            f"reads {shown} {m.repeat_count} times in a row since {self._clock(m.repeat_since)} while "
            f"{first}{more} nearby saw people move; check the sensor's "
            "view (blocked lens, misaligned beam) and restart it"
        )

    def _expected(self, zone_id: str, t0: float, t1: float) -> float:
        """People the capacity profile expects into the zone between t0 and t1 (the last 2 hours at most)."""
        t = max(t0, t1 - 7200.0)
        total = 0.0
        while t < t1:
            step = min(t1 - t, 900.0 - (t % 900.0))  # up to the next 15-minute slot boundary
            total += self.profile.expected_rate_per_min(zone_id, t + step / 2) * step / 60.0
            t += step
        return total

    def _clock(self, ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, self.tz).strftime("%H:%M:%S")


def _neighbourhoods(site: Site, of_zone: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Zone -> the sensors of the zone and its neighbours, in site order ("the others" of a sensor, less
    itself); zones with the same set of zones get the same tuple."""
    order = {sid: i for i, sid in enumerate(site.sensors)}
    made: dict[frozenset[str], tuple[str, ...]] = {}
    out = {}
    for zid, zone in site.zones.items():
        key = frozenset([zid, *(n for n in zone.neighbours if n in of_zone)])
        if key not in made:
            # Each zone's list is in site order already: sorting the concatenation merges the runs.
            made[key] = tuple(sorted((sid for z in key for sid in of_zone[z]), key=order.__getitem__))
        out[zid] = made[key]
    return out


def _value(r: Reading) -> float:
    """What an area or density reading shows, for telling a repeat from a change (a flow shows two numbers)."""
    if r.kind == "occupancy":
        return float(r.count if r.count is not None else -1)
    return r.density if r.density is not None else -1.0


def _show(v: tuple[float, ...], kind: str) -> str:
    if kind == "counter":
        return f"{v[0]:,.0f} in, {v[1]:,.0f} out"
    if kind == "density":
        return f"{v[0]:g} p/m²"
    return f"{v[0]:,.0f} people"
