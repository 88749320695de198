"""Every detector of detect/, by name, with the defaults the service uses.

tests/detect/test_contract.py checks each entry against the `detect.base.Detector` contract, and
detect.surge.compare measures each on the simulated scenario suite; `default_surge_detector` is the one that
won that comparison (see detect/surge/compare.py for the rule and benchmarks/detection.py for the figures).
"""

from __future__ import annotations

from collections.abc import Callable

from detect.base import Detector
from detect.surge.drift_residual import DriftResidual
from detect.surge.forecast_residual import ForecastResidual
from detect.surge.profile_ratio import ProfileRatio
from detect.surge.seasonal_quantile import SeasonalQuantile

DETECTORS: dict[str, Callable[[], Detector]] = {
    ProfileRatio.name: ProfileRatio,
    SeasonalQuantile.name: SeasonalQuantile,
    ForecastResidual.name: ForecastResidual,
    DriftResidual.name: DriftResidual,
}

# Won compare_on_scenarios on the Lujiazui suite (every NYE crossing warned, no false alarm on 4 quiet days,
# median lead 131 min vs 117 for seasonal_quantile); rerun it when detectors or scenarios change.
DEFAULT_SURGE = DriftResidual.name


def make_detector(name: str) -> Detector:
    """A fresh detector by its registered name; ValueError naming the known ones otherwise."""
    factory = DETECTORS.get(name)
    if factory is None:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    return factory()


def default_surge_detector() -> Detector:
    """The surge detector that won detect.surge.compare on the scenario suite."""
    return make_detector(DEFAULT_SURGE)
