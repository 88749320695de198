"""Forecaster + prediction-error detector: Holt's damped level and trend on the log ratio to the profile.

y = log((value + pad) / (expected + pad)) is how far the zone runs above (y > 0) or below its capacity
profile; on a usual day it hovers near a zone-specific constant (the profile is a little off for every
zone). A damped Holt forecaster (error-correction form) predicts y one tick ahead:
    forecast = level + phi × trend;  e = y - forecast
    level <- forecast + alpha × e;   trend <- phi × trend + beta × e
The level moves slowly (alpha small: it learns the zone's calibration, not an evening's build-up) and the
trend is damped, so a crowd building for hours leaves a growing positive residual instead of being
absorbed.

The residual is standardised by the counting noise of the expected rate in log terms,
sd0 = sqrt(1 / (max(expected, min_rate) × window_min) + rel_spread²), times a learned factor k (running
mean of (e / sd0)², prior 1, never below 1): zones noisier than counting alone are held to a wider band.
z = e / (sd0 × k);  excess = (z - band) / (alarm - band);  score = 1 - 0.1 ** excess.

Own arithmetic rather than river.time_series.HoltWinters / SNARIMAX: those keep their state in deques and
nested estimators that do not save to plain JSON, and their seasonality would need 96 × 15 steps a day.

>>> from detect.base import Obs
>>> det = ForecastResidual()
>>> for i in range(300):
...     v = 31.0 if i % 2 else 29.0
...     det.learn_one(Obs(ts=60.0 * i, value=v, slot=80, day_type="holiday", expected=30.0))
>>> det.score_one(Obs(ts=18000.0, value=31.0, slot=80, day_type="holiday", expected=30.0))
0.0
>>> det.score_one(Obs(ts=18000.0, value=75.0, slot=80, day_type="holiday", expected=30.0)) > 0.9
True
"""

from __future__ import annotations

import math
from typing import Any

from detect.base import Obs
from detect.surge.excess import check_kind, check_obs, score_from_excess


class ForecastResidual:
    name = "forecast_residual"

    def __init__(
        self,
        *,
        alpha: float = 0.001,
        beta: float = 0.00005,
        phi: float = 0.9,
        scale_memory: int = 2000,
        band: float = 3.0,
        alarm: float = 5.5,
        rel_spread: float = 0.08,
        window_min: float = 5.0,
        min_rate: float = 2.0,
        pad: float = 2.0,
    ) -> None:
        if not (0 < alpha <= 1 and 0 <= beta <= 1 and 0 <= phi <= 1 and scale_memory >= 1):
            raise ValueError("need 0 < alpha <= 1, 0 <= beta <= 1, 0 <= phi <= 1, scale_memory >= 1")
        if not (0 <= band < alarm and rel_spread >= 0 and window_min > 0 and min_rate > 0 and pad > 0):
            raise ValueError("need 0 <= band < alarm, rel_spread >= 0, window_min, min_rate and pad > 0")
        self.alpha = alpha
        self.beta = beta
        self.phi = phi
        self.scale_memory = scale_memory
        self.band = band
        self.alarm = alarm
        self.rel_spread = rel_spread
        self.window_min = window_min
        self.min_rate = min_rate
        self.pad = pad
        self._level = 0.0  # log ratio: 0 = the profile, the prior before anything is learned
        self._trend = 0.0
        self._k2 = 1.0  # learned (residual / counting noise)²
        self._n = 0

    def _params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "beta": self.beta,
            "phi": self.phi,
            "scale_memory": self.scale_memory,
            "band": self.band,
            "alarm": self.alarm,
            "rel_spread": self.rel_spread,
            "window_min": self.window_min,
            "min_rate": self.min_rate,
            "pad": self.pad,
        }

    def _y_sd(self, x: Obs) -> tuple[float, float]:
        """The log ratio and its counting noise. Without a profile, the log of the value itself."""
        expected = x.expected if x.expected is not None else 0.0
        y = math.log((x.value + self.pad) / (expected + self.pad))
        sd0 = math.sqrt(1.0 / (max(expected, self.min_rate) * self.window_min) + self.rel_spread**2)
        return y, sd0

    def forecast(self) -> float:
        """The next log ratio expected."""
        return self._level + self.phi * self._trend

    def learn_one(self, x: Obs) -> None:
        check_obs(x)
        y, sd0 = self._y_sd(x)
        f = self.forecast()
        e = y - f
        self._level = f + self.alpha * e
        self._trend = self.phi * self._trend + self.beta * e
        self._n = min(self._n + 1, self.scale_memory)
        a = 1.0 / (self._n + 1.0)  # +1: the prior k² = 1 counts as one observation
        self._k2 += a * (min((e / sd0) ** 2, 100.0) - self._k2)  # capped: one outlier cannot blow it up

    def score_one(self, x: Obs) -> float:
        check_obs(x)
        y, sd0 = self._y_sd(x)
        z = (y - self.forecast()) / (sd0 * math.sqrt(max(self._k2, 1.0)))
        return score_from_excess((z - self.band) / (self.alarm - self.band))

    def normal(self, x: Obs) -> float | None:
        """The usual inflow at x's time: the profile's expectation moved by the learned level (the trend is
        today's departure, not the usual); None without a profile."""
        if x.expected is None:
            return None
        return max(0.0, (x.expected + self.pad) * math.exp(self._level) - self.pad)

    def clone(self) -> ForecastResidual:
        return ForecastResidual(**self._params())

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.name, "level": self._level, "trend": self._trend, "k2": self._k2, "n": self._n}

    def from_state(self, state: dict[str, Any]) -> None:
        check_kind(state, self.name)
        try:
            level, trend, k2 = float(state["level"]), float(state["trend"]), float(state["k2"])
            n = int(state["n"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{self.name} state does not fit: {type(e).__name__}: {e}") from e
        if not (all(map(math.isfinite, (level, trend, k2))) and k2 > 0 and 0 <= n <= self.scale_memory):
            raise ValueError(f"{self.name} state out of range: {state!r}")
        self._level, self._trend, self._k2, self._n = level, trend, k2, n
