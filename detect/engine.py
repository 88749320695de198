"""The detection stage: every detector of detect/ combined into one graded level per zone and tick.

Per reading (a few µs): zone state, flow signals and sensor health take it.
Per tick, for every zone:
- health decides whether the zone's estimate can be trusted (an unhealthy zone is shown as unknown);
- the grader turns the measured share and density into a level with hysteresis and minimum duration;
- the surge monitor, the time-to-capacity forecaster, stall/counter-flow and sensor health add their own
  detections; each keeps counting for `hold_s` after it last fired, so a flickering signal neither flaps an
  alert nor resolves it on one quiet tick, and a zone whose data stops keeps its alert a while;
- the worst of these is the zone's level and its cause, and the one Detection passed to alerts/; its
  `signals` list every signal active for the zone (cause -> level), so alerts/ can tell a sensor-health
  signal standing beside a worse cause;
- each state also carries, for the wall, the zone's learned normal inflow (`expected_inflow_per_min`, from
  the surge monitor), the occupancy forecast ahead (`outlook`) and, when unhealthy, each bad sensor's
  problem in a few words (`sensor_issues`);
- `overrides` (detect.overrides: planned events and emergency mode, set by the alert manager) give the
  grader's and forecaster's thresholds and the surge monitor's planned flow, and are named in the message.
State is keyed by zone (no globals), so the stage can later be partitioned by zone across processes.
Overrides are not part of the snapshot: the alert manager restores them from its own database.
"""

from __future__ import annotations

from typing import Any

import msgspec

from detect.flowsignals import FlowSignals
from detect.forecast import CapacityForecaster
from detect.grading import Grader
from detect.health import SensorHealth
from detect.overrides import Overrides
from detect.state import ZoneTracker
from detect.surge.monitor import SurgeMonitor
from domain.levels import Level
from domain.profile import CapacityProfile
from domain.site import Site, Thresholds
from domain.values import Detection, DistrictState, Reading, ZoneState

# When two signals give the same level, the one a duty officer acts on first names the cause.
_CAUSE_RANK = {"capacity": 6, "density": 6, "forecast": 5, "stall": 4, "counterflow": 4, "surge": 3, "sensor": 1}


class DetectionEngine:
    def __init__(
        self,
        site: Site,
        profile: CapacityProfile | None = None,
        *,
        surge_detector: str | None = None,
        hold_s: float = 120.0,
        overrides: Overrides | None = None,
    ) -> None:
        if overrides is not None and overrides.site.info.id != site.info.id:
            raise ValueError(
                f"overrides are for site {overrides.site.info.id!r}, the engine runs site {site.info.id!r}"
            )
        self.site = site
        self.profile = profile or CapacityProfile(site)
        self.hold_s = hold_s
        self.overrides = overrides or Overrides(site)
        self.tracker = ZoneTracker(site, self.profile)
        # Through self.overrides at each call, so replacing engine.overrides takes effect everywhere.
        self.grader = Grader(site, thresholds_for=self._thresholds_for)
        self.surge = SurgeMonitor(site, self.profile, detector=surge_detector, flow_factor=self._flow_factor)
        self.forecaster = CapacityForecaster(site, thresholds_for=self._thresholds_for)
        self.flows = FlowSignals(site)
        self.health = SensorHealth(site)
        # zone -> cause -> (detection, held until)
        self._held: dict[str, dict[str, tuple[Detection, float]]] = {z: {} for z in site.zones}

    def _thresholds_for(self, zone_id: str, ts: float) -> Thresholds:
        return self.overrides.thresholds_for(zone_id, ts)

    def _flow_factor(self, zone_id: str, ts: float) -> float:
        return self.overrides.flow_factor(zone_id, ts)

    # --- per reading ---------------------------------------------------------------------------------
    def apply(self, r: Reading, received_at: float) -> None:
        self.tracker.apply(r)
        if r.kind == "flow":
            self.flows.apply(r)
        self.health.apply(r, received_at)

    # --- per tick ------------------------------------------------------------------------------------
    def tick(self, now: float) -> tuple[list[ZoneState], list[Detection]]:
        """Every zone's state and its one combined detection (NORMAL included, so alerts can resolve)."""
        states = self.tracker.snapshot(now)
        aux: list[Detection] = []
        for s in states:
            problems = self.health.zone_problems(s.zone, now)
            if problems:
                s.healthy = False
            if not s.healthy:
                # Why, per sensor, for the wall's health panel: sensor health's findings, then the tracker's.
                issues = self.health.issues(problems)
                for sensor, text in self.tracker.sensor_issues(s.zone, now).items():
                    issues.setdefault(sensor, text)
                s.sensor_issues = issues
            self.health.observe_zone(s)
            self.flows.observe_zone(s)
            self.forecaster.update(s)
            d = self.surge.observe(s)
            if d is not None:
                aux.append(d)
            f = self.forecaster.detect(s, now)
            if f is not None:
                aux.append(f)
            s.expected_inflow_per_min = self.surge.normal(s.zone, s.ts)
            if s.healthy:  # an unhealthy zone's forecast would be the one from before its data went bad
                s.forecast = self.forecaster.describe(s.zone)
                eta = self.forecaster.eta(s.zone, Level.I)
                s.eta_red_min = eta if eta is not None and eta > 0 else None
                points = self.forecaster.forecast(s.zone).points
                s.outlook = [(p.horizon_min, p.occupancy, p.low, p.high) for p in points]
        aux += self.flows.detect(now)
        aux += self.health.detections(now)
        for d in aux:
            self._held[d.zone][d.cause] = (d, now + self.hold_s)
        out = []
        for s in states:
            graded = self.grader.grade(s)
            best = graded
            signals: dict[str, int] = {graded.cause: int(graded.level)} if graded.level > Level.NORMAL else {}
            held = self._held[s.zone]
            for cause, (d, until) in list(held.items()):
                if until < now:
                    del held[cause]
                    continue
                if d.level > Level.NORMAL:
                    signals[cause] = int(d.level)
                if (d.level, _CAUSE_RANK[d.cause]) > (best.level, _CAUSE_RANK[best.cause]):
                    best = d
            message = best.message
            override = self.overrides.describe(s.zone, now)
            if override:
                message = f"{message}; {override}" if message else override
            # Keep the measured evidence next to the signal's own, so an alert always shows both.
            best = Detection(
                zone=best.zone,
                ts=now,
                level=best.level,
                cause=best.cause,
                score=best.score,
                evidence=best.evidence if best is graded else {**graded.evidence, **best.evidence},
                message=message,
                signals=signals,
            )
            s.level = best.level
            out.append(best)
        return states, out

    def district(self, now: float, states: list[ZoneState]) -> DistrictState:
        return self.tracker.district(now, states)

    # --- persistence ---------------------------------------------------------------------------------
    def to_snapshot(self) -> dict[str, Any]:
        return {
            "tracker": self.tracker.to_snapshot(),
            "grader": self.grader.to_snapshot(),
            "surge": self.surge.to_state(),
            "forecast": self.forecaster.to_state(),
            # Held signals, so a restart neither drops a live forecast alert nor resolves it for a tick.
            # Flow-signal and sensor-health memories are minutes long and rebuild by themselves.
            "held": {
                z: {c: [msgspec.to_builtins(d), until] for c, (d, until) in held.items()}
                for z, held in self._held.items()
                if held
            },
        }

    def from_snapshot(self, data: dict[str, Any]) -> None:
        self.tracker.from_snapshot(data["tracker"])
        self.grader.from_snapshot(data["grader"])
        self.surge.from_state(data["surge"])
        self.forecaster.from_state(data["forecast"])
        held: dict[str, dict[str, tuple[Detection, float]]] = {z: {} for z in self.site.zones}
        for z, causes in data.get("held", {}).items():
            if z in held:
                for c, (d, until) in causes.items():
                    held[z][c] = (msgspec.convert(d, Detection), float(until))
        self._held = held

    def warm(self, rows: list[tuple[str, float, float]]) -> int:
        """Teach the surge models from stored history rows (zone, ts, inflow_per_min)."""
        return self.surge.warm(rows)
