"""Compare the surge detectors on simulated days: warnings before capacity crossings, lead, false alarms.

The flow model of sim/ is driven directly (no sensors, no MQTT), so a simulated day takes a fraction of a
second; its arrivals give each zone's inflow per minute over the trailing 5 minutes (what the tracker
reports), and its exact occupancy gives the ground truth: a crossing is the first 10 s step at which a zone
holds its capacity or more. Every detector sees the same days, through a `SurgeMonitor` as the service runs
it (guarded learning, one clone per zone):

1. learn: `train_days` runs of each quiet scenario (weekday, holiday), each on a different date of its day
   type and its own seed;
2. false alarms: `eval_days` further runs of each, still learning as live data would;
3. surges: every surge scenario from the state reached after 2 (restored between scenarios, so one surge
   does not teach the next).

Flags one tick apart or up to `gap_s` apart make one alarm episode (the alert a duty officer sees). A
crossing is warned when an episode on its zone started before it and was still flagging within `gap_s` of
it; its lead is the time from the episode's start to the crossing. False alarms are episodes on quiet days,
per zone and simulated day. The winner: every crossing warned, then fewest false alarms, then longest median
lead (`pick_winner`).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import numpy.typing as npt

from detect.base import Decision
from detect.registry import DETECTORS
from detect.surge.monitor import DEFAULT_DECISION, SurgeMonitor
from domain.loader import load_site
from domain.profile import CapacityProfile
from domain.site import Site
from domain.values import ZoneState
from sim.model import FlowModel
from sim.scenario import Scenario, load_scenario, shipped_scenarios, surge_zones

FloatArray = npt.NDArray[np.float64]
ScenarioRef = str | Path | Scenario


@dataclass(frozen=True)
class SimDay:
    """One simulated run, sampled once per tick: inflow per minute and true occupancy, [tick, zone]."""

    name: str
    zone_ids: list[str]
    ts: FloatArray
    inflow: FloatArray
    occupancy: FloatArray
    crossings: dict[str, float]  # zone -> first time occupancy >= capacity
    surge_zones: frozenset[str]


@dataclass
class DetectorResult:
    name: str
    crossings: int = 0
    warned: int = 0
    leads_min: list[float] = field(default_factory=list)  # one per warned crossing
    missed: list[str] = field(default_factory=list)  # "scenario/zone" of crossings not warned in time
    false_alarms: int = 0  # episodes on quiet days
    zone_days: float = 0.0  # zones x quiet simulated days measured
    off_target: int = 0  # episodes on surge days in zones without a surge
    other_crossings: int = 0  # crossings in zones without a surge (capacity grading's job, not a surge's)

    @property
    def fa_per_zone_day(self) -> float:
        return self.false_alarms / self.zone_days if self.zone_days else 0.0

    @property
    def median_lead_min(self) -> float:
        return statistics.median(self.leads_min) if self.leads_min else 0.0

    @property
    def worst_lead_min(self) -> float:
        return min(self.leads_min) if self.leads_min else 0.0


def _scenario(ref: ScenarioRef) -> Scenario:
    return ref if isinstance(ref, Scenario) else load_scenario(ref)


def same_kind_of_day(sc: Scenario, profile: CapacityProfile, k: int) -> Scenario:
    """The k-th run of a scenario (k = 0: itself): the k-th later date the site's calendar gives the same
    day type (so the monitor's calendar agrees with the model's), and a seed of its own."""
    day, found = sc.day, 0
    for _ in range(400 * (k + 1)):
        if found == k:
            break
        day += dt.timedelta(days=1)
        noon = dt.datetime.combine(day, dt.time(12), profile.tz).timestamp()
        if profile.day_type_of(noon) == sc.day_type:
            found += 1
    else:
        if found != k:
            day = sc.day  # a day type the calendar never gives: same date, new seed
    return msgspec.structs.replace(sc, day=day, seed=sc.seed + 7919 * k, name=f"{sc.name}#{k}")


@dataclass(frozen=True)
class Realism:
    """How real days depart from the capacity profile, which the sim follows exactly otherwise: each zone
    runs persistently above or below it (`zone_sd`, the profile's estimation error), each day differs
    (`day_sd`: weather, a school holiday) and so does each hour (`hour_sd`). Log-normal factors on the
    arrival rate, seeded by `seed` (zone) and the scenario's seed (day, hour); all zero = the profile."""

    zone_sd: float = 0.15
    day_sd: float = 0.08
    hour_sd: float = 0.06
    seed: int = 11


class _RealisticModel(FlowModel):
    """The sim's flow model with arrival rates scaled by Realism's factors (occupancy stays consistent:
    the model's own dynamics run on the scaled rates)."""

    def __init__(self, site: Site, sc: Scenario, realism: Realism) -> None:
        n = len(site.zones)
        zone_rng = np.random.default_rng([realism.seed, 0])
        day_rng = np.random.default_rng([realism.seed, sc.seed])
        self._bias = np.exp(zone_rng.normal(0.0, realism.zone_sd, n) + day_rng.normal(0.0, realism.day_sd, n))
        self._hourly = np.exp(day_rng.normal(0.0, realism.hour_sd, (48, n)))  # a run spans at most 2 days
        self._t_start = sc.window(ZoneInfo(site.info.timezone))[0]
        super().__init__(site, sc, np.random.default_rng(sc.seed))

    def base_rate_per_s(self, ts: float) -> FloatArray:
        hour = min(47, max(0, int((ts - self._t_start) // 3600)))
        return np.asarray(super().base_rate_per_s(ts) * self._bias * self._hourly[hour], dtype=np.float64)


def simulate(
    site: Site,
    sc: Scenario,
    *,
    tick_s: float = 60.0,
    window_s: float = 300.0,
    realism: Realism | None = None,
) -> SimDay:
    """Run the flow model over the scenario's window; sample inflow (trailing window) and occupancy."""
    model = (
        _RealisticModel(site, sc, realism)
        if realism is not None
        else FlowModel(site, sc, np.random.default_rng(sc.seed))
    )
    n_zones = len(model.zone_ids)
    keep = max(1, round(window_s / model.step_s))
    window_s = keep * model.step_s
    ring = np.zeros((keep, n_zones))
    every = max(1, round(tick_s / model.step_s))
    ts: list[float] = []
    inflow: list[FloatArray] = []
    occ: list[FloatArray] = []
    crossings: dict[str, float] = {}
    over = np.zeros(n_zones, dtype=bool)
    step = 0
    while model.t < model.t1 - 1e-9:
        arrivals, _ = model.step()
        ring[step % keep] = arrivals
        step += 1
        now_over = model.occupancy >= model.capacity
        for i in np.flatnonzero(now_over & ~over):
            crossings.setdefault(model.zone_ids[i], model.t)
        over |= now_over
        if step % every == 0 and step >= keep:  # from the first full window: a live service is long warm
            ts.append(model.t)
            inflow.append(ring.sum(axis=0) * 60.0 / window_s)
            occ.append(model.occupancy.astype(np.float64))
    zones: set[str] = set()
    for s in sc.surges:
        zones.update(surge_zones(s, site))
    return SimDay(
        name=sc.name,
        zone_ids=list(model.zone_ids),
        ts=np.array(ts),
        inflow=np.array(inflow).reshape(len(ts), n_zones),
        occupancy=np.array(occ).reshape(len(ts), n_zones),
        crossings=crossings,
        surge_zones=frozenset(zones),
    )


def run_day(mon: SurgeMonitor, day: SimDay) -> dict[str, list[float]]:
    """Feed a day to the monitor tick by tick; the flagged tick times per zone."""
    site = mon.site
    caps = [site.zones[z].capacity for z in day.zone_ids]
    areas = [site.zones[z].area_m2 for z in day.zone_ids]
    flags: dict[str, list[float]] = {z: [] for z in day.zone_ids}
    for t, row_in, row_occ in zip(day.ts.tolist(), day.inflow.tolist(), day.occupancy.tolist(), strict=True):
        for i, zone in enumerate(day.zone_ids):
            occ = row_occ[i]
            state = ZoneState(
                zone=zone,
                ts=t,
                occupancy=occ,
                capacity=caps[i],
                share=occ / caps[i],
                density=occ / areas[i],
                inflow_per_min=row_in[i],
                outflow_per_min=0.0,
                arrivals_today=0,
            )
            if mon.observe(state) is not None:
                flags[zone].append(t)
    return flags


def episodes(flag_ts: Sequence[float], gap_s: float) -> list[tuple[float, float]]:
    """(first, last) flag time of each run of flags no more than gap_s apart.

    >>> episodes([60.0, 120.0, 180.0, 1800.0], gap_s=600.0)
    [(60.0, 180.0), (1800.0, 1800.0)]
    """
    out: list[tuple[float, float]] = []
    for t in flag_ts:
        if out and t - out[-1][1] <= gap_s:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def _lead_s(eps: list[tuple[float, float]], crossing: float, gap_s: float) -> float | None:
    """Lead of the episode that warns of a crossing: started before it, still flagging near it."""
    for first, last in reversed(eps):
        if first < crossing and last >= crossing - gap_s:
            return crossing - first
    return None


def default_surge_scenarios(quiet: Sequence[ScenarioRef]) -> list[str]:
    """Every shipped scenario with surges that is not one of the quiet ones."""
    quiet_names = {_scenario(q).name for q in quiet}
    return [n for n in shipped_scenarios() if n not in quiet_names and load_scenario(n).surges]


def compare_on_scenarios(
    site: Site | None = None,
    *,
    detectors: Iterable[str] | None = None,
    quiet: Sequence[ScenarioRef] = ("weekday", "holiday"),
    surges: Sequence[ScenarioRef] | None = None,
    train_days: int = 3,
    eval_days: int = 2,
    tick_s: float = 60.0,
    decision: Decision = DEFAULT_DECISION,
    gap_s: float = 600.0,
    realism: Realism | None = Realism(),
) -> dict[str, DetectorResult]:
    """Each detector's figures on the simulated suite (see the module docstring), in registry order."""
    site = site or load_site()
    profile = CapacityProfile(site)
    names = list(detectors) if detectors is not None else list(DETECTORS)
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; known: {', '.join(DETECTORS)}")
    quiet_sc = [_scenario(q) for q in quiet]
    surge_sc = [_scenario(s) for s in (surges if surges is not None else default_surge_scenarios(quiet))]
    train = [simulate(site, same_kind_of_day(q, profile, k), tick_s=tick_s, realism=realism)
             for k in range(1, train_days + 1) for q in quiet_sc]
    held_out = [simulate(site, same_kind_of_day(q, profile, k), tick_s=tick_s, realism=realism)
                for k in range(train_days + 1, train_days + eval_days + 1) for q in quiet_sc]
    surge_days = [simulate(site, s, tick_s=tick_s, realism=realism) for s in surge_sc]
    results: dict[str, DetectorResult] = {}
    for name in names:
        res = results[name] = DetectorResult(name)
        mon = SurgeMonitor(site, profile, detector=name, decision=decision)
        for day in train:
            run_day(mon, day)
        for day in held_out:
            flags = run_day(mon, day)
            res.false_alarms += sum(len(episodes(f, gap_s)) for f in flags.values())
            res.zone_days += len(day.zone_ids)
        learned = mon.to_state()
        for day in surge_days:
            mon.from_state(learned)
            flags = run_day(mon, day)
            for zone, f in flags.items():
                eps = episodes(f, gap_s)
                if zone not in day.surge_zones:
                    res.off_target += len(eps)
                    res.other_crossings += zone in day.crossings
                if zone in day.crossings and zone in day.surge_zones:
                    res.crossings += 1
                    lead = _lead_s(eps, day.crossings[zone], gap_s)
                    if lead is None:
                        res.missed.append(f"{day.name}/{zone}")
                    else:
                        res.warned += 1
                        res.leads_min.append(lead / 60.0)
    return results


def pick_winner(results: dict[str, DetectorResult]) -> str:
    """All crossings warned first, then fewest false alarms per zone-day, then the longest median lead."""
    return min(
        results.values(),
        key=lambda r: (r.crossings - r.warned, round(r.fa_per_zone_day, 6), -r.median_lead_min),
    ).name


def format_table(results: dict[str, DetectorResult]) -> str:
    """A fixed-width table, one detector per row."""
    head = (
        f"{'detector':<18} {'warned':>9} {'median lead':>11} {'worst lead':>10} "
        f"{'FA':>4} {'FA/zone-day':>11} {'off-target':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in results.values():
        lines.append(
            f"{r.name:<18} {f'{r.warned}/{r.crossings}':>9} {r.median_lead_min:>8.1f} min "
            f"{r.worst_lead_min:>6.1f} min {r.false_alarms:>4} {r.fa_per_zone_day:>11.3f} {r.off_target:>10}"
        )
    return "\n".join(lines)
