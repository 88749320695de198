"""Per-zone state from readings: occupancy, flow rates, density, arrivals today, sensor health.

How counters and anchors combine (one estimate per zone, no global state):

* Counters (flow readings) integrate: occupancy += inflow - outflow, clamped at 0. They carry the fast
  changes between anchors but drift (missed crossings, a counter down, people already there at start).
* Anchors (area counts, and densities × zone area) measure the level. The zone's measurement is the average
  of the latest value of each of its anchor sensors that is fresh (within 3 of its intervals) and not
  faulty; the estimate moves part way towards it: occupancy += anchor_gain × (measured - occupancy). The
  first anchor of a zone sets it outright (the service may start with people already there).
* A flow that arrives late, ending at or before an anchor already applied, is already partly inside that
  anchor's measurement. It is added scaled by the product of (1 - gain) over the anchors since, which is
  exactly what the blend would have given had the flow arrived in order: (O + d) + g(M - O - d) =
  (1 - g)O + gM + (1 - g)d. So the outcome does not depend on arrival order within the lateness window.

apply() is O(1) per reading (an anchor reading included: the zone keeps a running sum of its fresh anchors);
snapshot() is O(zones × ring size + sensors) and runs on a tick.

>>> from domain.loader import load_site
>>> from domain.profile import CapacityProfile
>>> from domain.values import Reading
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> t = ZoneTracker(site, CapacityProfile(site))
>>> t.apply(Reading(sensor="seg2-gate", zone="seg-2", kind="flow", ts=1e9, seq=1, interval_s=60, inflow=30))
>>> [s.occupancy for s in t.snapshot(1e9) if s.zone == "seg-2"]
[30.0]
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, insort
from collections import Counter, deque
from collections.abc import Iterable
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any

from detect.durations import how_long
from detect.rates import FlowRing
from domain.levels import Level
from domain.profile import CapacityProfile
from domain.site import Sensor, Site, Zone
from domain.values import DistrictState, Reading, ZoneState

SNAPSHOT_VERSION = 1
SILENT_INTERVALS = 3.0  # a sensor (or zone) silent this many reporting intervals counts as missing
_DAY_SPAN_S = 30 * 3600.0  # from a local midnight, always inside the next local day, even across a DST change
_KEPT_ANCHORS = 4  # anchors remembered for scaling late flows; beyond 4 the weight is negligible
_STATUSES = ("online", "offline", "fault")
_EXACT_BITS = 1074  # every finite float is a whole multiple of 2**-1074
_NEVER = -math.inf


def _exact(v: float) -> int:
    """v × 2**1074 as an integer, exactly: a running sum of these never rounds, whatever the order."""
    n, d = v.as_integer_ratio()
    return n << (_EXACT_BITS + 1 - d.bit_length())


def _fresh_until(ts: float, window: float) -> float:
    """The latest reading time t for which `t - ts <= window` holds in floating point (the freshness test of an
    anchor), so comparing t with this one number decides exactly as that test would."""
    t = ts + window
    while t - ts > window:
        t = math.nextafter(t, -math.inf)
    while (later := math.nextafter(t, math.inf)) - ts <= window:
        t = later
    return t


class _Anchors:
    """A zone's anchor sensors: each one's latest (ts, people), and the exact sum of those fresh and not held
    out by an offline/fault status, so a reading takes their mean in O(1) rather than rescanning them all.

    An anchor is fresh for a reading at t while t - ts <= its silence window (3 of its intervals). Fresh ones
    are "live": summed, each with one entry in a heap by expiry (`_fresh_until`; a newer value only moves the
    expiry in `_live`, and the entry is brought up to date when it comes to the top). Every anchor reading
    first retires the live ones that expired by its time into `_stale` (kept in expiry order), so the live set
    is exactly the fresh one for any reading not older than the newest seen (`_mark`). An older reading adds
    back the stale ones still fresh for it: the newest few of `_stale`, a scan from its end. Anchors of
    sensors the site does not know (tests, an old snapshot) have the reading's own interval as their window,
    as before: they are scanned.
    """

    __slots__ = ("_heap", "_live", "_mark", "_odd", "_sensors", "_stale", "_stale_order", "_sum", "latest")

    def __init__(self, sensors: dict[str, Sensor]) -> None:
        self._sensors = sensors  # the site's: an anchor's silence window is SILENT_INTERVALS of its interval
        self.latest: dict[str, tuple[float, float]] = {}  # sensor -> (ts, people measured)
        self._live: dict[str, float] = {}  # sensor -> fresh until
        self._sum = 0  # exact sum of the live anchors' people (_exact)
        self._heap: list[tuple[float, str]] = []  # one (fresh until, at most that of _live) per live anchor
        self._mark = -math.inf  # newest reading time seen: every live anchor is fresh until at least this
        self._stale: dict[str, float] = {}  # sensor -> fresh until, before _mark (and not held out)
        self._stale_order: list[tuple[float, str]] = []  # the same, ascending
        self._odd: set[str] = set()  # anchors of sensors the site does not know

    def put(self, sid: str, ts: float, people: float, held_out: bool) -> None:
        """A sensor's newest value (the caller has checked it is not older than the one held)."""
        old = self.latest.get(sid)
        self.latest[sid] = (ts, people)
        sensor = self._sensors.get(sid)
        if sensor is None:
            self._odd.add(sid)
        elif sid in self._live and old is not None:  # live stays live: a newer value expires no sooner
            self._sum += _exact(people) - _exact(old[1])
            self._live[sid] = _fresh_until(ts, SILENT_INTERVALS * sensor.interval_s)
        else:
            self._unstale(sid)
            if not held_out:
                self._admit(sid)

    def hold_out(self, sid: str, held: bool) -> None:
        """The sensor's status changed: offline or faulty anchors are left out of the mean, until cleared."""
        if sid not in self.latest or sid not in self._sensors:
            return
        if not held:
            if sid not in self._live and sid not in self._stale:
                self._admit(sid)
        elif self._live.pop(sid, None) is not None:
            self._sum -= _exact(self.latest[sid][1])
            self._heap = [e for e in self._heap if e[1] != sid]  # a status change is rare: O(anchors) is fine
            heapify(self._heap)
        else:
            self._unstale(sid)

    def mean_at(self, t: float, status: dict[str, Any], odd_window: float) -> float | None:
        """Mean of the anchors fresh for a reading at t and without a status (None: there are none)."""
        heap, live = self._heap, self._live
        while heap and heap[0][0] < t:
            until, sid = heap[0]
            now_until = live[sid]
            if now_until > until:  # a newer value since the entry was made: expires later
                heapreplace(heap, (now_until, sid))
                continue
            heappop(heap)  # expired: out of the sum, kept in order for an older reading
            del live[sid]
            self._sum -= _exact(self.latest[sid][1])
            self._stale[sid] = until
            self._stale_order.append((until, sid))  # after every stale one: they expired before _mark
        total, n = self._sum, len(live)
        if t < self._mark:  # an older reading: the anchors that expired since its time are fresh for it
            for until, sid in reversed(self._stale_order):
                if until < t:
                    break
                total += _exact(self.latest[sid][1])
                n += 1
        else:
            self._mark = t
        for sid in self._odd:
            ts, people = self.latest[sid]
            if t - ts <= odd_window and sid not in status:
                total += _exact(people)
                n += 1
        return total / (n << _EXACT_BITS) if n else None

    def load(self, latest: dict[str, tuple[float, float]], status: dict[str, Any]) -> None:
        """Restored values into a fresh zone (none is expired until a reading says so)."""
        for sid, (ts, people) in latest.items():
            self.put(sid, ts, people, sid in status)

    def _admit(self, sid: str) -> None:
        ts, people = self.latest[sid]
        until = _fresh_until(ts, SILENT_INTERVALS * self._sensors[sid].interval_s)
        if until >= self._mark:
            self._live[sid] = until
            self._sum += _exact(people)
            heappush(self._heap, (until, sid))
        else:  # already expired for any reading as new as one seen
            self._stale[sid] = until
            insort(self._stale_order, (until, sid))

    def _unstale(self, sid: str) -> None:
        until = self._stale.pop(sid, None)
        if until is not None:
            del self._stale_order[bisect_left(self._stale_order, (until, sid))]


class _ZoneMemory:
    """Everything the tracker knows about one zone."""

    __slots__ = (
        "anchors",
        "arrivals",
        "day_end",
        "day_start",
        "density",
        "density_ts",
        "first_ts",
        "last_ts",
        "newest_anchor_ts",
        "occ_ts",
        "occupancy",
        "recent_anchors",
        "ring",
        "seen",
        "status",
    )

    def __init__(self, window_s: float, bucket_s: float, sensors: dict[str, Sensor]) -> None:
        self.occupancy = 0.0
        self.occ_ts: float | None = None  # event time of the last counter change
        self.ring = FlowRing(window_s, bucket_s)
        self.anchors = _Anchors(sensors)
        self.recent_anchors: deque[tuple[float, float]] = deque(maxlen=_KEPT_ANCHORS)  # (ts, gain used)
        self.newest_anchor_ts = _NEVER  # at least the newest ts in recent_anchors (of every anchor applied)
        self.density: float | None = None  # measured, people / m²
        self.density_ts: float | None = None
        self.arrivals = 0
        self.day_start: float | None = None
        self.day_end: float | None = None
        # Oldest reading of any kind: the silence of a sensor never heard from counts from here.
        self.first_ts: float | None = None
        self.last_ts: float | None = None  # newest reading of any kind
        self.seen: dict[str, float] = {}  # sensor -> newest reading ts, for sensors the site does not place here
        self.status: dict[str, tuple[float, str, str]] = {}  # sensor -> (ts, offline|fault, detail)

    def note_anchor(self, ts: float, gain: float) -> None:
        """An anchor applied at event time ts with this gain: remembered for scaling late flows."""
        self.recent_anchors.append((ts, gain))
        if ts > self.newest_anchor_ts:
            self.newest_anchor_ts = ts


class ZoneTracker:
    """Estimates every zone's state from readings; keyed by zone so it can be partitioned by zone later."""

    def __init__(
        self,
        site: Site,
        profile: CapacityProfile,
        *,
        rate_window_s: float = 300.0,
        anchor_gain: float = 0.5,
        bucket_s: float = 10.0,
    ) -> None:
        if not (0.0 < anchor_gain <= 1.0):
            raise ValueError(f"anchor_gain must be within (0, 1], got {anchor_gain}")
        if not (rate_window_s > 0 and bucket_s > 0):
            raise ValueError(f"rate_window_s and bucket_s must be positive, got {rate_window_s}, {bucket_s}")
        self.site = site
        self.profile = profile
        self.rate_window_s = rate_window_s
        self.anchor_gain = anchor_gain
        self.bucket_s = bucket_s
        self.rejected: Counter[str] = Counter()  # reason -> readings refused; exported as a metric
        self.dropped_zones: list[str] = []  # zones in a restored snapshot that the site no longer has
        # How long each sensor may stay silent (3 of its intervals), and the zone as a whole (3 intervals of
        # its slowest sensor, 60 s if it has none). One silent sensor is enough to make the zone unhealthy:
        # a missing entrance counter quietly skews the occupancy. An anchor is fresh as long as its sensor
        # may be silent.
        # Per zone, its sensors' site indices and silence windows, in site order: parallel typed columns, not a
        # tuple per sensor.
        of_zone: dict[str, list[int]] = {z: [] for z in site.zones}
        self._index = site.index
        self._ids: list[str] = list(site.sensors)
        self._zone_of: list[str] = []
        for i, s in enumerate(site.sensors.values()):
            self._zone_of.append(s.zone)
            if s.zone in of_zone:
                of_zone[s.zone].append(i)
        self._allowed_at: dict[str, array[int]] = {z: array("i", a) for z, a in of_zone.items()}
        intervals = [s.interval_s for s in site.sensors.values()]
        self._allowed_s: dict[str, array[float]] = {
            z: array("d", [SILENT_INTERVALS * intervals[i] for i in a]) for z, a in of_zone.items()
        }
        self._silence_s: dict[str, float] = {
            zid: SILENT_INTERVALS * max([intervals[i] for i in a], default=60.0) for zid, a in of_zone.items()
        }
        # Newest reading time of each site sensor in its own zone (-inf: none yet), at its site index; a
        # reading of a sensor the site does not place in that zone goes to the zone's `seen` dict instead.
        self._seen = array("d", [_NEVER]) * len(self._ids)
        self._zones: dict[str, _ZoneMemory] = {z: self._new_zone() for z in site.zones}

    def _new_zone(self) -> _ZoneMemory:
        return _ZoneMemory(self.rate_window_s, self.bucket_s, self.site.sensors)

    # ---- readings -------------------------------------------------------------------------------

    def apply(self, r: Reading) -> None:
        """Fold one reading into its zone. Bad readings are counted in `rejected` by reason, never raised."""
        m = self._zones.get(r.zone)
        kind, ts = r.kind, r.ts
        # The checks of _check for a plain flow reading, inline (most readings are these); anything else there.
        if not (
            m is not None
            and kind == "flow"
            and r.inflow >= 0
            and r.outflow >= 0
            and -math.inf < ts < math.inf
            and 0 <= r.interval_s < math.inf
        ):
            reason = self._check(r)
            if reason:
                self.rejected[reason] += 1
                return
            assert m is not None
        if m.last_ts is None or ts > m.last_ts:
            m.last_ts = ts
        if m.first_ts is None or ts < m.first_ts:
            m.first_ts = ts
        sid = r.sensor
        i = self._index.get(sid)
        if i is not None and self._zone_of[i] == r.zone:
            if ts > self._seen[i]:
                self._seen[i] = ts
        elif ts > m.seen.get(sid, _NEVER):
            m.seen[sid] = ts
        if kind == "status":
            self._apply_status(m, r)
            return
        # A sensor that sends data after saying it was offline is evidently back; a fault needs an "online".
        if m.status:
            st = m.status.get(sid)
            if st is not None and st[1] == "offline" and ts > st[0]:
                del m.status[sid]
                m.anchors.hold_out(sid, False)
        if kind == "flow":
            self._apply_flow(m, r)
        elif kind == "occupancy":
            assert r.count is not None
            self._apply_anchor(m, r, float(r.count))
        else:  # density
            assert r.density is not None
            if m.density_ts is None or ts >= m.density_ts:
                m.density, m.density_ts = r.density, ts
            self._apply_anchor(m, r, r.density * self.site.zones[r.zone].area_m2)

    def _check(self, r: Reading) -> str:
        if r.zone not in self._zones:
            return "unknown_zone"
        if not math.isfinite(r.ts):
            return "bad_timestamp"
        if r.kind == "flow":
            if r.inflow < 0 or r.outflow < 0:
                return "negative_flow"
            if not (math.isfinite(r.interval_s) and r.interval_s >= 0):
                return "bad_interval"
        elif r.kind == "occupancy":
            if r.count is None or r.count < 0:
                return "bad_count"
        elif r.kind == "density":
            if r.density is None or not math.isfinite(r.density) or r.density < 0:
                return "bad_density"
        elif r.kind == "status":
            if r.status not in _STATUSES:
                return "bad_status"
        else:
            return "unknown_kind"
        return ""

    def _apply_status(self, m: _ZoneMemory, r: Reading) -> None:
        prev = m.status.get(r.sensor)
        if prev is not None and prev[0] > r.ts:
            return  # an older status than the one we hold: the newer one stands
        if r.status == "online":
            m.status.pop(r.sensor, None)
            m.anchors.hold_out(r.sensor, False)
        else:
            assert r.status is not None
            m.status[r.sensor] = (r.ts, r.status, r.detail)
            m.anchors.hold_out(r.sensor, True)

    def _apply_flow(self, m: _ZoneMemory, r: Reading) -> None:
        ts = r.ts
        net = float(r.inflow - r.outflow)
        weight = 1.0
        if ts <= m.newest_anchor_ts:  # no anchor is as new (the common case): all weights would be 1
            for a_ts, gain in m.recent_anchors:  # see the module docstring: late flows vs anchors
                if ts <= a_ts:
                    weight *= 1.0 - gain
        occ = m.occupancy + weight * net
        m.occupancy = occ if occ > 0.0 else 0.0  # max(0.0, occ), NaN included, without the call
        if m.occ_ts is None or ts > m.occ_ts:
            m.occ_ts = ts
        m.ring.add(ts, r.interval_s, r.inflow, r.outflow)
        if m.day_start is None or (m.day_end is not None and ts >= m.day_end):
            self._roll_day(m, ts)
        assert m.day_start is not None
        if ts >= m.day_start:  # a late reading from before midnight belongs to yesterday's count
            m.arrivals += r.inflow

    def _apply_anchor(self, m: _ZoneMemory, r: Reading, people: float) -> None:
        prev = m.anchors.latest.get(r.sensor)
        if prev is not None and prev[0] > r.ts:
            return  # older than this sensor's latest value: the latest value stands
        m.anchors.put(r.sensor, r.ts, people, held_out=r.sensor in m.status)
        # The mean of the zone's anchors fresh at r.ts (within 3 of their intervals) and not offline/faulty.
        odd_window = SILENT_INTERVALS * (r.interval_s if r.interval_s > 0 else 60.0)  # a sensor the site lacks
        measured = m.anchors.mean_at(r.ts, m.status, odd_window)
        if measured is None:
            return  # the only anchor is marked offline or faulty: keep integrating counters
        gain = 1.0 if not m.recent_anchors else self.anchor_gain
        m.occupancy = max(0.0, m.occupancy + gain * (measured - m.occupancy))
        m.note_anchor(r.ts, gain)

    def seed_arrivals(self, zone_id: str, ts: float, arrivals: int) -> bool:
        """Arrivals counted earlier today (at event time `ts`) by a previous run, from the store: a service
        restarted without its snapshot must not compare "since I started" with the profile's "since midnight".
        Only raises the count, only for today (the day of `ts`); True if it was taken."""
        m = self._zones.get(zone_id)
        if m is None or arrivals <= 0:
            return False
        self._roll_day(m, ts)
        if m.day_start is None or not (m.day_start <= ts < (m.day_end or math.inf)) or arrivals <= m.arrivals:
            return False
        m.arrivals = int(arrivals)
        return True

    def _roll_day(self, m: _ZoneMemory, ts: float) -> None:
        """Reset arrivals at local midnight, by event time."""
        if m.day_start is None or (m.day_end is not None and ts >= m.day_end):
            start = self.profile.local_midnight(ts)
            m.day_start = start
            m.day_end = self.profile.local_midnight(start + _DAY_SPAN_S)
            m.arrivals = 0

    # ---- state out ------------------------------------------------------------------------------

    def snapshot(self, now: float, zones: Iterable[str] | None = None) -> list[ZoneState]:
        """Every zone's state at event time `now`, in site order; with `zones`, only those (in that order):
        the live path between ticks recomputes just the zones that had readings."""
        if zones is None:
            return [self._state(zid, m, now) for zid, m in self._zones.items()]
        return [self._state(zid, self._zones[zid], now) for zid in zones]

    def _state(self, zid: str, m: _ZoneMemory, now: float) -> ZoneState:
        zone: Zone = self.site.zones[zid]
        if m.day_end is not None and now >= m.day_end:
            self._roll_day(m, now)
        occ = m.occupancy
        density = occ / zone.area_m2
        measured_fresher = m.density_ts is not None and (m.occ_ts is None or m.density_ts >= m.occ_ts)
        if m.density is not None and measured_fresher:
            density = m.density  # measured after the last counter change: the direct measure is better
        rin, rout = m.ring.rates(now)
        return ZoneState(
            zone=zid,
            ts=now,
            occupancy=occ,
            capacity=zone.capacity,
            share=occ / zone.capacity,
            density=density,
            inflow_per_min=rin,
            outflow_per_min=rout,
            arrivals_today=m.arrivals,
            healthy=self._healthy(zid, m, now),
        )

    def _healthy(self, zid: str, m: _ZoneMemory, now: float) -> bool:
        if m.last_ts is None or m.status:
            return False
        if now - m.last_ts > self._silence_s[zid]:
            return False
        seen, first = self._seen, m.first_ts
        for i, allowed in zip(self._allowed_at[zid], self._allowed_s[zid], strict=True):
            ref = seen[i]
            if ref == _NEVER:
                if first is None:
                    continue
                ref = first
            if now - ref > allowed:
                return False
        return True

    def _silent(self, m: _ZoneMemory, now: float, i: int, allowed_s: float) -> float | None:
        """How long the zone's sensor at site index i has been silent, if longer than allowed. A sensor not
        heard from since the tracker began is counted from the zone's first reading, so startup is not an alarm."""
        ref: float | None = self._seen[i]
        if ref == _NEVER:
            ref = m.first_ts
        if ref is None:
            return None
        quiet = now - ref
        return quiet if quiet > allowed_s else None

    def _allowed(self, zid: str) -> zip[tuple[int, float]]:
        return zip(self._allowed_at[zid], self._allowed_s[zid], strict=True)

    def problems(self, zone_id: str, now: float) -> list[str]:
        """Why a zone is unhealthy at `now`, one line each, for the operator. Empty when healthy."""
        m = self._zones[zone_id]
        out = [f"{sid}: {st}" + (f" ({why})" if why else "") for sid, (_, st, why) in m.status.items()]
        if m.last_ts is None:
            return [*out, "no reading yet"]
        for i, allowed in self._allowed(zone_id):
            quiet = self._silent(m, now, i, allowed)
            if quiet is not None:
                never = "" if self._seen[i] != _NEVER else ", never heard from"
                out.append(f"{self._ids[i]}: silent for {quiet:.0f} s (allowed {allowed:.0f} s{never})")
        if not self._allowed_at[zone_id] and now - m.last_ts > self._silence_s[zone_id]:
            out.append(f"silent for {now - m.last_ts:.0f} s (allowed {self._silence_s[zone_id]:.0f} s)")
        return out

    def sensor_issues(self, zone_id: str, now: float) -> dict[str, str]:
        """What `problems` says, as sensor id -> a few words for the wall ("silent: no data for 4 min"); a
        zone never heard from lists each of its sensors (or its own id when it has none)."""
        m = self._zones[zone_id]
        out = {
            sid: f"{st}: reported by the device" + (f" ({why})" if why else "")
            for sid, (_, st, why) in m.status.items()
        }
        if m.last_ts is None:
            for sid in [self._ids[i] for i in self._allowed_at[zone_id]] or [zone_id]:
                out.setdefault(sid, "no data yet")
            return out
        for i, allowed in self._allowed(zone_id):
            quiet = self._silent(m, now, i, allowed)
            if quiet is not None:
                out.setdefault(self._ids[i], f"silent: no data for {how_long(quiet)}")
        if not self._allowed_at[zone_id] and now - m.last_ts > self._silence_s[zone_id]:
            out.setdefault(zone_id, f"silent: no data for {how_long(now - m.last_ts)}")
        return out

    def district(self, now: float, states: list[ZoneState]) -> DistrictState:
        """District totals; grade `states` first, since zones_by_level counts their `level`."""
        by_level = {lv.label: 0 for lv in Level}
        for s in states:
            by_level[s.level.label] += 1
        return DistrictState(
            ts=now,
            people_now=sum(s.occupancy for s in states),
            arrivals_today=sum(s.arrivals_today for s in states),
            expected_arrivals_so_far=self.profile.expected_so_far(now),
            peak_day_visits=self.site.info.peak_day_visits,
            zones_by_level=by_level,
        )

    # ---- restart --------------------------------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        """Plain JSON-able dict of everything needed to carry on after a restart."""
        zones: dict[str, Any] = {}
        for zid, m in self._zones.items():
            zones[zid] = {
                "occupancy": m.occupancy,
                "occ_ts": m.occ_ts,
                "ring": m.ring.to_dict(),
                "anchors": {k: list(v) for k, v in m.anchors.latest.items()},
                "recent_anchors": [list(a) for a in m.recent_anchors],
                "density": m.density,
                "density_ts": m.density_ts,
                "arrivals": m.arrivals,
                "day_start": m.day_start,
                "day_end": m.day_end,
                "first_ts": m.first_ts,
                "last_ts": m.last_ts,
                "seen": {**self._seen_in(zid), **m.seen},
                "status": {k: list(v) for k, v in m.status.items()},
            }
        return {"version": SNAPSHOT_VERSION, "zones": zones, "rejected": dict(self.rejected)}

    def _seen_in(self, zid: str) -> dict[str, float]:
        """The zone's own sensors heard from, and when last."""
        seen = self._seen
        return {self._ids[i]: seen[i] for i in self._allowed_at[zid] if seen[i] != _NEVER}

    def from_snapshot(self, data: dict[str, Any]) -> None:
        """Restore in place from to_snapshot(). ValueError on a snapshot that does not fit, leaving the
        tracker as it was. Zones the site no longer has are listed in `dropped_zones`."""
        if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise ValueError(f"tracker snapshot version {version!r} is not {SNAPSHOT_VERSION}; start afresh")
        fresh = {z: self._new_zone() for z in self.site.zones}
        try:
            rejected = Counter({str(k): int(v) for k, v in data.get("rejected", {}).items()})
            dropped = [z for z in data["zones"] if z not in fresh]
            for zid, d in data["zones"].items():
                if zid in fresh:
                    _load_zone(fresh[zid], d)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"tracker snapshot does not fit: {type(e).__name__}: {e}") from e
        seen = array("d", [_NEVER]) * len(self._ids)
        for zid, m in fresh.items():  # the zone's own sensors into the column, as apply() keeps them
            for sid in list(m.seen):
                i = self._index.get(sid)
                if i is not None and self._zone_of[i] == zid:
                    seen[i] = m.seen.pop(sid)
        self._zones, self.rejected, self.dropped_zones, self._seen = fresh, rejected, dropped, seen


def _opt(x: Any) -> float | None:
    return None if x is None else float(x)


def _load_zone(m: _ZoneMemory, d: dict[str, Any]) -> None:
    m.occupancy = max(0.0, float(d["occupancy"]))
    m.occ_ts = _opt(d["occ_ts"])
    m.ring.load(d["ring"])
    m.recent_anchors.extend((float(a[0]), float(a[1])) for a in d["recent_anchors"])
    m.newest_anchor_ts = max((a for a, _ in m.recent_anchors), default=_NEVER)
    m.density, m.density_ts = _opt(d["density"]), _opt(d["density_ts"])
    m.arrivals = int(d["arrivals"])
    m.day_start, m.day_end = _opt(d["day_start"]), _opt(d["day_end"])
    m.first_ts = _opt(d["first_ts"])
    m.last_ts = _opt(d["last_ts"])
    m.seen = {str(k): float(v) for k, v in d["seen"].items()}
    m.status = {str(k): (float(v[0]), str(v[1]), str(v[2])) for k, v in d["status"].items()}
    m.anchors.load({str(k): (float(v[0]), float(v[1])) for k, v in d["anchors"].items()}, m.status)
