"""Seasonal quantile filter: the usual inflow per (day type, 15-minute slot), and an upper band above it.

The capacity profile gives the shape of the day (`expected`); the filter learns, per (day_type, slot), how
this zone departs from it: the residual r = value - expected (the value itself when there is no profile).
For each (day_type, slot) it keeps three numbers: how many observations it has learned (n), an
exponentially weighted mean of r and an exponentially weighted mean absolute deviation (MAD) around it. The
weight is 1/n until `memory` observations, then fixed at 1/memory, so a slot averages its first weeks
evenly and afterwards follows slow change. Learning the residual rather than the raw value keeps the
profile's own movement inside a slot (the trailing window straddling a slot boundary as the malls close)
out of the learned spread. level + band × 1.25 MAD stands in for a high quantile of the slot (1.25 MAD is
the sd of a normal): cheaper and steadier than a streaming quantile with 15 observations a day per slot.

Before much is learned, the profile is the prior, scaled by the zone's own calibration: c, the running
mean over all its slots and day types of log((value + min_rate) / (expected + min_rate)) (every zone runs
a little above or below the profile, and one number learns that in a day where 96 slots need weeks):
    prior = expected × exp(c);  w = n / (n + prior_weight);  level = w × (expected + mean_r) + (1 - w) × prior
    var = w × (1.25 MAD)² + (1 - w) × prior_sd²,  prior_sd² = count noise² + (rel_spread × prior)²
The spread never falls below the counting (Poisson) noise of the level nor below rel_floor × level (days
differ by more than counting noise: weather, school holidays; a quarter above the usual is not a surge).
A day type never learned (New Year's Eve comes once a year) is scored against the calibrated profile.

z = (value - level) / spread;  excess = (z - band) / (alarm - band);  score = 1 - 0.1 ** excess.
Only excesses count: low flow is not a surge.

Memory: at most `max_day_types` × 96 entries of three numbers; observations of further day types are
scored against the prior and not learned.

>>> from detect.base import Obs
>>> det = SeasonalQuantile()
>>> usual = [Obs(ts=60.0 * i, value=40.0 + (i % 5), slot=80, day_type="weekday", expected=30.0)
...          for i in range(200)]
>>> for x in usual:
...     det.learn_one(x)
>>> det.score_one(usual[0]._replace(value=43.0))
0.0
>>> det.score_one(usual[0]._replace(value=90.0)) > 0.9
True
"""

from __future__ import annotations

import math
from typing import Any

from detect.base import Obs
from detect.surge.excess import check_kind, check_obs, count_sd, score_from_excess

_MAD_TO_SD = 1.25


class SeasonalQuantile:
    name = "seasonal_quantile"

    def __init__(
        self,
        *,
        memory: int = 210,
        prior_weight: float = 30.0,
        band: float = 3.0,
        alarm: float = 5.5,
        rel_spread: float = 0.1,
        rel_floor: float = 0.08,
        zone_memory: int = 10_080,
        window_min: float = 5.0,
        min_rate: float = 2.0,
        max_day_types: int = 8,
    ) -> None:
        if memory < 1 or prior_weight < 0 or not 0 <= band < alarm or rel_spread < 0:
            raise ValueError("need memory >= 1, prior_weight >= 0, 0 <= band < alarm, rel_spread >= 0")
        if window_min <= 0 or min_rate <= 0 or max_day_types < 1 or rel_floor < 0 or zone_memory < 1:
            raise ValueError("need window_min, min_rate > 0, rel_floor >= 0, max_day_types, zone_memory >= 1")
        self.memory = memory
        self.prior_weight = prior_weight
        self.band = band
        self.alarm = alarm
        self.rel_spread = rel_spread
        self.rel_floor = rel_floor
        self.zone_memory = zone_memory
        self.window_min = window_min
        self.min_rate = min_rate
        self.max_day_types = max_day_types
        self._zone = [0.0, 0.0]  # [n, mean log ratio to the profile]: the zone's calibration c
        # day_type -> slot -> [n, mean residual, MAD of the residual]
        self._tables: dict[str, dict[int, list[float]]] = {}

    def _params(self) -> dict[str, Any]:
        return {
            "memory": self.memory,
            "prior_weight": self.prior_weight,
            "band": self.band,
            "alarm": self.alarm,
            "rel_spread": self.rel_spread,
            "rel_floor": self.rel_floor,
            "zone_memory": self.zone_memory,
            "window_min": self.window_min,
            "min_rate": self.min_rate,
            "max_day_types": self.max_day_types,
        }

    def usual(self, x: Obs) -> tuple[float, float] | None:
        """(level, spread) of x's slot as learned and blended with the profile; None if nothing is known."""
        cell = self._tables.get(x.day_type, {}).get(x.slot)
        n, mean, mad = cell if cell is not None else (0.0, 0.0, 0.0)
        if x.expected is None:
            if n == 0:
                return None
            w = 1.0
        else:
            w = n / (n + self.prior_weight) if n + self.prior_weight > 0 else 1.0
        expected = x.expected if x.expected is not None else 0.0
        prior = expected * math.exp(self._zone[1])
        level = w * (expected + mean) + (1.0 - w) * prior
        prior_var = count_sd(prior, window_min=self.window_min, min_rate=self.min_rate) ** 2
        prior_var += (self.rel_spread * prior) ** 2
        var = w * (_MAD_TO_SD * mad) ** 2 + (1.0 - w) * prior_var
        floor = max(count_sd(level, window_min=self.window_min, min_rate=self.min_rate), self.rel_floor * level)
        return level, max(math.sqrt(var), floor)

    def normal(self, x: Obs) -> float | None:
        """The usual inflow at x's time: the level of `usual`; None when nothing is known."""
        usual = self.usual(x)
        return None if usual is None else max(0.0, usual[0])

    def learn_one(self, x: Obs) -> None:
        check_obs(x)
        if x.expected is not None:
            n = min(self._zone[0] + 1.0, float(self.zone_memory))
            lr = math.log((x.value + self.min_rate) / (x.expected + self.min_rate))
            self._zone = [n, self._zone[1] + (lr - self._zone[1]) / n]
        table = self._tables.get(x.day_type)
        if table is None:
            if len(self._tables) >= self.max_day_types:
                return  # bounded memory: a day type beyond the cap is scored against the profile only
            table = self._tables[x.day_type] = {}
        r = x.value - (x.expected if x.expected is not None else 0.0)
        cell = table.get(x.slot)
        if cell is None:
            table[x.slot] = [1.0, r, 0.0]
            return
        n, mean, mad = cell
        a = 1.0 / min(n + 1.0, float(self.memory))
        mad += a * (abs(r - mean) - mad)
        mean += a * (r - mean)
        cell[0], cell[1], cell[2] = min(n + 1.0, float(self.memory)), mean, mad

    def score_one(self, x: Obs) -> float:
        check_obs(x)
        usual = self.usual(x)
        if usual is None:
            return 0.0
        level, spread = usual
        z = (x.value - level) / spread
        return score_from_excess((z - self.band) / (self.alarm - self.band))

    def clone(self) -> SeasonalQuantile:
        return SeasonalQuantile(**self._params())

    def to_state(self) -> dict[str, Any]:
        tables = {
            dt: {str(slot): list(cell) for slot, cell in sorted(t.items())} for dt, t in self._tables.items()
        }
        return {"kind": self.name, "zone": list(self._zone), "tables": tables}

    def from_state(self, state: dict[str, Any]) -> None:
        check_kind(state, self.name)
        try:
            zone = [float(v) for v in state["zone"]]
            if len(zone) != 2 or not (0 <= zone[0] <= self.zone_memory and math.isfinite(zone[1])):
                raise ValueError(f"bad zone calibration {state['zone']!r}")
            tables: dict[str, dict[int, list[float]]] = {}
            for dt, t in state["tables"].items():
                cells: dict[int, list[float]] = {}
                for slot, cell in t.items():
                    n, mean, mad = (float(v) for v in cell)
                    s = int(slot)
                    if not (0 <= s < 96 and n >= 1 and all(map(math.isfinite, (n, mean, mad)))):
                        raise ValueError(f"bad cell {dt}/{slot}: {cell!r}")
                    cells[s] = [n, mean, mad]
                tables[str(dt)] = cells
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{self.name} state does not fit: {type(e).__name__}: {e}") from e
        if len(tables) > self.max_day_types:
            raise ValueError(f"{self.name} state has {len(tables)} day types, more than {self.max_day_types}")
        self._zone, self._tables = zone, tables
