"""Page-Hinkley on the standardised log ratio to the profile: a slow, sustained rise adds up to an alarm.

x = (y - mean) / sd0, where y = log((value + pad) / (expected + pad)), mean is a slow running mean of y (the
zone's usual offset from the profile, learned) and sd0 the counting noise of the expected rate in log terms.
One-sided Page-Hinkley, in its cumulative-sum form:
    S <- max(0, S + x - delta)
(the same as PH's "cumulative deviation minus its running minimum"); an alarm at S = threshold. The score is
how far S, with the current observation added, has gone towards the threshold: excess = S / threshold,
score = 1 - 0.1 ** excess, so 0.9 at the threshold.

`delta` is the drift allowed per observation (in noise units), so noise alone keeps S near zero; a ratio
held a few noise-sd above usual for a quarter of an hour gets there. S is state, updated by learn_one
only, so under `learn_guarded` it freezes while an observation scores above `protect` (0.8 by default);
after that it takes one observation with x - delta of 0.3 × threshold to cross 0.9. With the defaults
(delta 2, threshold 8: tuned in detect.surge.compare) that is x >= 4.4, reached on a build-up well before
the capacity crossing, while usual days (x mostly below 2) leave S near zero.

Own arithmetic rather than river.drift.PageHinkley: river's detector keeps its sums in private attributes
that are not a stable, JSON-able state, and it resets itself on alarm (we need a score, not a one-off flag).

>>> from detect.base import Obs
>>> det = DriftResidual()
>>> for i in range(200):
...     det.learn_one(Obs(ts=60.0 * i, value=30.0, slot=80, day_type="holiday", expected=30.0))
>>> det.score_one(Obs(ts=12000.0, value=32.0, slot=80, day_type="holiday", expected=30.0))
0.0
>>> rising = [Obs(ts=12000.0 + 60 * i, value=45.0, slot=80, day_type="holiday", expected=30.0)
...           for i in range(30)]
>>> scores = [(det.score_one(x), det.learn_one(x))[0] for x in rising]
>>> scores[0] < 0.5 < 0.9 < max(scores)
True
"""

from __future__ import annotations

import math
from typing import Any

from detect.base import Obs
from detect.surge.excess import check_kind, check_obs, score_from_excess


class DriftResidual:
    name = "drift_residual"

    def __init__(
        self,
        *,
        delta: float = 2.0,
        threshold: float = 8.0,
        mean_memory: int = 3000,
        rel_spread: float = 0.08,
        window_min: float = 5.0,
        min_rate: float = 2.0,
        pad: float = 2.0,
    ) -> None:
        if not (delta >= 0 and threshold > 0 and mean_memory >= 1 and rel_spread >= 0):
            raise ValueError("need delta >= 0, threshold > 0, mean_memory >= 1, rel_spread >= 0")
        if not (window_min > 0 and min_rate > 0 and pad > 0):
            raise ValueError("need window_min, min_rate and pad > 0")
        self.delta = delta
        self.threshold = threshold
        self.mean_memory = mean_memory
        self.rel_spread = rel_spread
        self.window_min = window_min
        self.min_rate = min_rate
        self.pad = pad
        self._mean = 0.0  # usual log ratio; 0 = the profile
        self._n = 0
        self._sum = 0.0  # S, the one-sided cumulative deviation

    def _params(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "threshold": self.threshold,
            "mean_memory": self.mean_memory,
            "rel_spread": self.rel_spread,
            "window_min": self.window_min,
            "min_rate": self.min_rate,
            "pad": self.pad,
        }

    def _step(self, x: Obs) -> tuple[float, float]:
        """(y, S with x added)."""
        expected = x.expected if x.expected is not None else 0.0
        y = math.log((x.value + self.pad) / (expected + self.pad))
        sd0 = math.sqrt(1.0 / (max(expected, self.min_rate) * self.window_min) + self.rel_spread**2)
        return y, max(0.0, self._sum + (y - self._mean) / sd0 - self.delta)

    def learn_one(self, x: Obs) -> None:
        check_obs(x)
        y, s = self._step(x)
        self._sum = s
        self._n = min(self._n + 1, self.mean_memory)
        self._mean += (y - self._mean) / (self._n + 1.0)  # +1: the prior (0, the profile) counts once

    def score_one(self, x: Obs) -> float:
        check_obs(x)
        return score_from_excess(self._step(x)[1] / self.threshold)

    def normal(self, x: Obs) -> float | None:
        """The usual inflow at x's time: the profile's expectation moved by the learned offset,
        (expected + pad) × exp(mean) - pad; None without a profile."""
        if x.expected is None:
            return None
        return max(0.0, (x.expected + self.pad) * math.exp(self._mean) - self.pad)

    def clone(self) -> DriftResidual:
        return DriftResidual(**self._params())

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.name, "mean": self._mean, "n": self._n, "sum": self._sum}

    def from_state(self, state: dict[str, Any]) -> None:
        check_kind(state, self.name)
        try:
            mean, s, n = float(state["mean"]), float(state["sum"]), int(state["n"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{self.name} state does not fit: {type(e).__name__}: {e}") from e
        if not (math.isfinite(mean) and math.isfinite(s) and s >= 0 and 0 <= n <= self.mean_memory):
            raise ValueError(f"{self.name} state out of range: {state!r}")
        self._mean, self._sum, self._n = mean, s, n
