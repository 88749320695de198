"""The district day after day: the simulator's scenarios chained into one continuous stream of messages.

Each day is the shipped scenario for its kind of day, moved to that date and widened to a whole day, from
01:00 to 01:00 the next day (so New Year's Eve keeps its countdown surge, which ends after midnight):

- Monday to Friday: `weekday` (a normal working day, no surge);
- Saturday and Sunday: `holiday` (the site's calendar gives weekends the holiday profile);
- the fixed public holidays of the site's calendar (1 January, 1-3 May, 1-7 October): `holiday`;
- 31 December: `nye` (the riverside segments over capacity around midnight).

The days are one district, not 30 restarts: the sensors' sequence numbers, running totals and reporting
phases, and the people in each zone, carry over from one day to the next. The simulator announces every
sensor online with a status message when a run starts, numbered in the sensor's one sequence (ingest keeps a
sequence per sensor and kind, docs/messages.md): a second day's announcement would open a gap of a day's
readings in the status stream, so only the first day announces, and the following days start where the
sequences stood.

    for msg in district_messages(site, dt.date(2026, 12, 31), days=30):
        ...  # sim.wire.SimMessage, in delivery order
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from domain.profile import FIXED_HOLIDAYS
from domain.site import Site
from sim.scenario import Scenario, load_scenario
from sim.stream import Simulation
from sim.wire import SimMessage

DAY_START = dt.time(1)  # each simulated day runs 01:00 to 01:00: New Year's Eve ends at 00:50


@dataclass(frozen=True)
class Day:
    date: dt.date
    scenario: Scenario  # the shipped scenario moved to `date`, from DAY_START to DAY_START the next day

    @property
    def kind(self) -> str:
        return self.scenario.name


def scenario_name(date: dt.date) -> str:
    if (date.month, date.day) == (12, 31):
        return "nye"
    if (date.month, date.day) in FIXED_HOLIDAYS or date.weekday() >= 5:
        return "holiday"
    return "weekday"


def calendar(last: dt.date, days: int) -> list[Day]:
    """`days` consecutive days ending with `last`, each with its scenario."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    base = {name: load_scenario(name) for name in ("weekday", "holiday", "nye")}
    out = []
    for k in range(days):
        date = last - dt.timedelta(days=days - 1 - k)
        sc = msgspec.structs.replace(base[scenario_name(date)], day=date, start=DAY_START, end=DAY_START)
        out.append(Day(date, sc))
    return out


def district_messages(site: Site, last: dt.date, days: int) -> Iterator[tuple[Day, SimMessage]]:
    """Every message of `days` simulated days ending with `last`, in delivery order, with the day it is from."""
    prev: Simulation | None = None
    for day in calendar(last, days):
        sim = Simulation(site, day.scenario)
        if prev is None:
            yield from ((day, m) for m in sim.messages())
        else:
            _carry_over(prev, sim)
            yield from ((day, m) for m in sim.messages() if m.kind != "status")
        prev = sim


def _carry_over(prev: Simulation, sim: Simulation) -> None:
    """The next day continues the previous one: people in the zones, the sensors (totals, phases), and their
    sequence numbers, less the one the skipped online announcement takes."""
    sim.model.occupancy = prev.model.occupancy
    sim.bank = prev.bank
    for state in prev.injector.state.values():
        state.seq -= 1  # the announcement numbered next is dropped: the readings go on from here
    sim.injector.state = prev.injector.state
