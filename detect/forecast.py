"""Time to capacity: each zone's occupancy 5 to 30 minutes ahead, and when it will cross each level.

Per zone, a bounded history of (event time, occupancy, net flow) sampled at most every `sample_s`. On it, a
weighted least-squares line over the last `window_s` of event time, recent samples weighing more (half-life
`half_life_s`), refitted once with Huber weights so an anchor correction or a stray spike does not bend it.
The line is extrapolated: forecast(h) = level + slope × h, with a 90% band from the fit's residuals and the
uncertainty of the slope.

A crossing is only predicted when the rise is *consistent*: the slope is significant (t ≥ `min_t`), at
least `min_slope_share` of capacity per minute, the zone's counters agree (net inflow not negative when the
zone has counters) and all of this has held for `min_rising_s` of event time. So a flat zone with noisy
counts, or one blip, raises nothing.

Why a straight line and not a damped trend: a damped trend would always predict late on a steady build-up,
and the build-ups that matter (a New Year's Eve crowd, a plaza filling for a show) are steady over the
15-30 minutes that count. A zone nearing its plateau shows it in the fit within minutes, because recent
samples weigh most.

Level crossings are judged against the zone's share thresholds at the time of the newest sample, from
`thresholds_for(zone_id, ts)` when given (the engine passes detect.overrides.Overrides.thresholds_for, so an
ETA to red respects a planned event's red threshold and emergency tightening), else the site's.

>>> from domain.loader import load_site
>>> from domain.values import ZoneState
>>> site = load_site("tests/fixtures/mini_site.toml")
>>> fc = CapacityForecaster(site)
>>> for i in range(31):  # seg-1 rising by 20 people a minute from 800 (capacity 2,000)
...     occ = 800 + 20 * i / 2
...     fc.update(ZoneState(zone="seg-1", ts=1e9 + 30 * i, occupancy=occ, capacity=2000, share=occ / 2000,
...                         density=occ / 2000, inflow_per_min=60, outflow_per_min=40, arrivals_today=0))
>>> round(fc.eta("seg-1", Level.II), 1)  # 1,600 (80%) - 1,100 now = 500 people at 20/min
25.0
>>> fc.eta("seg-1", Level.I) is None  # 95% is 40 min away: beyond the 30-minute horizon
True
>>> fc.describe("seg-1")
'reaches IV blue in about 5 min and II orange in about 25 min'
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from domain.levels import GRADED, Level
from domain.site import Site, Thresholds
from domain.values import Detection, ZoneState

STATE_VERSION = 1
DEFAULT_HORIZONS_MIN: tuple[int, ...] = (5, 10, 15, 20, 30)
_Z90 = 1.645  # two-sided 90% band
_HUBER_K = 2.0  # residuals beyond 2 robust sd are down-weighted
_MIN_SAMPLES = 6


class ForecastPoint(NamedTuple):
    horizon_min: int
    occupancy: float
    low: float  # 90% band
    high: float


class Forecast(NamedTuple):
    zone: str
    ts: float  # the time the forecast is made from (the newest sample)
    occupancy: float  # fitted level now
    slope_per_min: float  # people per minute; 0.0 when there is not enough history
    rising: bool  # a consistent rise (see the module docstring)
    points: tuple[ForecastPoint, ...]  # empty when there is not enough history


class _Fit(NamedTuple):
    level: float
    slope: float  # per minute
    sigma: float  # residual sd, people
    n_eff: float
    x_mean: float  # weighted mean of sample times, minutes before the newest
    sxx: float

    def predict(self, h_min: float) -> tuple[float, float]:
        """Prediction and its standard error h minutes after the newest sample."""
        se = self.sigma * math.sqrt(1.0 + 1.0 / self.n_eff + (h_min - self.x_mean) ** 2 / self.sxx)
        return self.level + self.slope * h_min, se

    @property
    def t_stat(self) -> float:
        se = self.sigma / math.sqrt(self.sxx)
        return math.inf if se == 0 else self.slope / se


class _ZoneHistory:
    __slots__ = ("fit", "rising_since", "samples")

    def __init__(self, maxlen: int) -> None:
        self.samples: deque[tuple[float, float, float, bool]] = deque(maxlen=maxlen)  # ts, occ, net, has_flow
        self.fit: _Fit | None = None
        self.rising_since: float | None = None


class CapacityForecaster:
    """Per-zone occupancy forecasts and level-crossing times; state keyed by zone."""

    def __init__(
        self,
        site: Site,
        *,
        window_s: float = 900.0,
        sample_s: float = 20.0,
        half_life_s: float = 300.0,
        horizon_min: float = 30.0,
        min_rising_s: float = 120.0,
        min_t: float = 3.0,
        min_slope_share: float = 0.001,
        net_flow_s: float = 180.0,
        thresholds_for: Callable[[str, float], Thresholds] | None = None,
    ) -> None:
        if not (window_s > 0 and sample_s > 0 and half_life_s > 0 and horizon_min > 0):
            raise ValueError("window_s, sample_s, half_life_s and horizon_min must be positive")
        self.site = site
        self.tz = ZoneInfo(site.info.timezone)
        self.window_s = window_s
        self.sample_s = sample_s
        self.half_life_s = half_life_s
        self.horizon_min = horizon_min
        self.min_rising_s = min_rising_s
        self.min_t = min_t
        self.min_slope_share = min_slope_share
        self.net_flow_s = net_flow_s
        self.thresholds_for = thresholds_for
        self.ignored = 0  # states refused: unknown zone, older than the newest sample, not finite
        self._maxlen = math.ceil(window_s / sample_s) + 2
        self._zones: dict[str, _ZoneHistory] = {}

    # ---- learning -------------------------------------------------------------------------------

    def update(self, state: ZoneState) -> None:
        """Add one tick's state of a zone. Unhealthy states are not learned: their occupancy is a guess."""
        zone = self.site.zones.get(state.zone)
        finite = math.isfinite(state.ts) and math.isfinite(state.occupancy)
        if zone is None or not finite or not state.healthy:
            self.ignored += 1
            return
        h = self._zones.get(state.zone)
        if h is None:
            h = self._zones[state.zone] = _ZoneHistory(self._maxlen)
        has_flow = state.inflow_per_min > 0 or state.outflow_per_min > 0
        sample = (state.ts, state.occupancy, state.inflow_per_min - state.outflow_per_min, has_flow)
        if h.samples:
            last_ts = h.samples[-1][0]
            if state.ts < last_ts:
                self.ignored += 1
                return
            if math.floor(state.ts / self.sample_s) == math.floor(last_ts / self.sample_s):
                h.samples[-1] = sample  # same sample slot: the newer state replaces it
            else:
                h.samples.append(sample)
        else:
            h.samples.append(sample)
        h.fit = self._fit(h)
        if self._rising_now(h, zone.capacity):
            if h.rising_since is None:
                h.rising_since = state.ts
        else:
            h.rising_since = None

    def _fit(self, h: _ZoneHistory) -> _Fit | None:
        newest = h.samples[-1][0]
        pts = [(ts, occ) for ts, occ, _, _ in h.samples if newest - ts <= self.window_s]
        if len(pts) < _MIN_SAMPLES or (newest - pts[0][0]) < self.window_s / 3:
            return None  # too short a history to tell a trend from noise
        xs = [(ts - newest) / 60.0 for ts, _ in pts]
        ys = [occ for _, occ in pts]
        decay = math.log(2.0) / (self.half_life_s / 60.0)
        w0 = [math.exp(decay * x) for x in xs]
        fit = _wls(xs, ys, w0)
        if fit is None:
            return None
        resid = [y - (fit.level + fit.slope * x) for x, y in zip(xs, ys, strict=True)]
        mad = sorted(abs(r) for r in resid)[len(resid) // 2] * 1.4826
        if mad > 0:
            w1 = [w * min(1.0, _HUBER_K * mad / abs(r)) if r else w for w, r in zip(w0, resid, strict=True)]
            fit = _wls(xs, ys, w1) or fit
        return fit

    def _rising_now(self, h: _ZoneHistory, capacity: int) -> bool:
        f = h.fit
        if f is None or f.slope < self.min_slope_share * capacity or f.t_stat < self.min_t:
            return False
        newest = h.samples[-1][0]
        recent = [(net, has) for ts, _, net, has in h.samples if newest - ts <= self.net_flow_s]
        if any(has for _, has in recent):
            # The counters must not contradict the rise (a zone without counters is judged on anchors alone).
            return sum(net for net, _ in recent) / len(recent) >= 0.0
        return True

    # ---- questions ------------------------------------------------------------------------------

    def _thresholds(self, zone_id: str, ts: float) -> Thresholds:
        if self.thresholds_for is None:
            return self.site.thresholds_for(zone_id)
        return self.thresholds_for(zone_id, ts)

    def rising(self, zone_id: str) -> bool:
        """A rise that has been consistent for min_rising_s."""
        h = self._zones.get(zone_id)
        if h is None or h.rising_since is None or not h.samples:
            return False
        return h.samples[-1][0] - h.rising_since >= self.min_rising_s

    def forecast(self, zone_id: str, horizons_min: Sequence[int] = DEFAULT_HORIZONS_MIN) -> Forecast:
        h = self._zones.get(zone_id)
        if h is None or not h.samples:
            return Forecast(zone_id, math.nan, math.nan, 0.0, False, ())
        ts, occ = h.samples[-1][0], h.samples[-1][1]
        if h.fit is None:
            return Forecast(zone_id, ts, occ, 0.0, False, ())
        points = []
        for hz in horizons_min:
            mean, se = h.fit.predict(float(hz))
            points.append(
                ForecastPoint(int(hz), max(0.0, mean), max(0.0, mean - _Z90 * se), max(0.0, mean + _Z90 * se))
            )
        return Forecast(zone_id, ts, h.fit.level, h.fit.slope, self.rising(zone_id), tuple(points))

    def eta(self, zone_id: str, level: Level) -> float | None:
        """Minutes until the zone's occupancy crosses `level`'s share threshold: 0.0 if it is already there;
        None if the rise is not consistent or the crossing is beyond the horizon."""
        if level is Level.NORMAL:
            raise ValueError("eta needs a graded level (IV..I)")
        zone = self.site.zones[zone_id]
        h = self._zones.get(zone_id)
        if h is None or h.fit is None:
            return None
        target = self._thresholds(zone_id, h.samples[-1][0]).share_for(level) * zone.capacity
        if h.fit.level >= target:
            return 0.0
        if not self.rising(zone_id):
            return None
        minutes = (target - h.fit.level) / h.fit.slope
        return minutes if minutes <= self.horizon_min else None

    def describe(self, zone_id: str) -> str:
        """One line for the wall, e.g. 'reaches II orange in about 12 min'."""
        h = self._zones.get(zone_id)
        if h is None or h.fit is None:
            return "not enough data yet to forecast"
        ahead = []
        for lv in GRADED:
            eta = self.eta(zone_id, lv)
            if eta is not None and eta > 0:
                ahead.append(f"{lv.label} in about {_minutes(eta)} min")
        if ahead:
            # The nearest level first and the most severe last: both matter to whoever reads the wall.
            shown = ahead if len(ahead) <= 2 else [ahead[0], ahead[-1]]
            return "reaches " + " and ".join(shown)
        if self.rising(zone_id):
            return f"rising, no new level within {self.horizon_min:g} min"
        zone = self.site.zones[zone_id]
        if h.fit.slope <= -self.min_slope_share * zone.capacity and h.fit.t_stat <= -self.min_t:
            return "falling"
        return "steady"

    # ---- detection ------------------------------------------------------------------------------

    def detect(self, state: ZoneState, now: float) -> Detection | None:
        """A forecast alert when the zone is predicted to reach I red within the horizon.

        Level: I red when the crossing is 10 minutes away or less, II orange before that. Crowd managers need
        about 15 minutes to act (DESIGN.md §3), so a 30-minute warning must reach them as soon as it is
        reliable, but as orange: far ahead a straight-line forecast can still bend, and red triggers the
        heaviest measures (metro trains passing the station, closing the area). Within 10 minutes there is
        less time left than the response needs, and a short extrapolation is reliable: waiting for the
        measured red would waste what little is left, so it is red now.
        A zone already at red is not forecast: the measured level (cause 'capacity') speaks for it.
        """
        zone = self.site.zones.get(state.zone)
        if zone is None or not state.healthy:
            return None
        red = self.eta(state.zone, Level.I)
        if red is None or red <= 0.0:
            return None
        t = self._thresholds(state.zone, state.ts)
        if state.share >= t.share_for(Level.I):
            return None
        fc = self.forecast(state.zone, (15, 30))
        f15, f30 = fc.points[0].occupancy, fc.points[1].occupancy
        orange = self.eta(state.zone, Level.II)
        level = Level.I if red <= 10.0 else Level.II
        at_min = 15 if red <= 15.0 else 30
        shown = f15 if at_min == 15 else f30
        clock = dt.datetime.fromtimestamp(fc.ts + at_min * 60.0, self.tz).strftime("%H:%M")
        net = state.inflow_per_min - state.outflow_per_min
        return Detection(
            zone=state.zone,
            ts=now,
            level=level,
            cause="forecast",
            score=max(0.0, min(1.0, 1.0 - red / self.horizon_min)),
            evidence={
                "eta_min_red": red,
                "eta_min_orange": -1.0 if orange is None else orange,  # -1: not within the horizon
                "forecast_15": f15,
                "forecast_30": f30,
                "net_flow_per_min": net,
                "slope_per_min": fc.slope_per_min,
            },
            message=(
                f"{zone.name_en} reaches {Level.I.label} in about {_minutes(red)} min "
                f"(forecast {shown:,.0f} / {zone.capacity:,} at {clock}; now {state.occupancy:,.0f}, "
                f"rising {fc.slope_per_min:,.0f}/min)"
            ),
        )

    # ---- restart --------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "zones": {
                zid: {"samples": [list(s) for s in h.samples], "rising_since": h.rising_since}
                for zid, h in self._zones.items()
            },
        }

    def from_state(self, state: dict[str, Any]) -> None:
        """Restore in place from to_state(); ValueError (state kept as it was) for data it cannot use.
        Zones the site no longer has are left out."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ValueError(f"forecaster state version {version!r} is not {STATE_VERSION}")
        zones: dict[str, _ZoneHistory] = {}
        try:
            for zid, d in state["zones"].items():
                if zid not in self.site.zones:
                    continue
                h = _ZoneHistory(self._maxlen)
                for ts, occ, net, has in d["samples"]:
                    h.samples.append((float(ts), float(occ), float(net), bool(has)))
                rs = d["rising_since"]
                h.rising_since = None if rs is None else float(rs)
                if h.samples:
                    h.fit = self._fit(h)
                zones[str(zid)] = h
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"forecaster state does not fit: {type(e).__name__}: {e}") from e
        self._zones = zones


def _wls(xs: list[float], ys: list[float], ws: list[float]) -> _Fit | None:
    sw = sum(ws)
    sw2 = sum(w * w for w in ws)
    if sw <= 0 or sw2 <= 0:
        return None
    n_eff = sw * sw / sw2
    if n_eff <= 2.5:
        return None
    x_mean = sum(w * x for w, x in zip(ws, xs, strict=True)) / sw
    y_mean = sum(w * y for w, y in zip(ws, ys, strict=True)) / sw
    # Weights normalised to sum to n_eff, so the usual standard errors apply.
    k = n_eff / sw
    sxx = k * sum(w * (x - x_mean) ** 2 for w, x in zip(ws, xs, strict=True))
    if sxx <= 0:
        return None
    sxy = k * sum(w * (x - x_mean) * (y - y_mean) for w, x, y in zip(ws, xs, ys, strict=True))
    slope = sxy / sxx
    level = y_mean - slope * x_mean
    rss = k * sum(w * (y - level - slope * x) ** 2 for w, x, y in zip(ws, xs, ys, strict=True))
    sigma = math.sqrt(max(rss, 0.0) / (n_eff - 2.0))
    return _Fit(level, slope, sigma, n_eff, x_mean, sxx)


def _minutes(m: float) -> int:
    return max(1, round(m))
