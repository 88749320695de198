"""One small protocol for every detector, in the spirit of river: `learn_one` / `score_one`, score apart
from decide.

A detector sees one series (a zone's inflow per minute, a sensor's counts per interval) one observation at a
time and scores how far it departs from what the detector has learned: 0 = usual, 1 = as unusual as it gets.
It never decides: `Decision` turns scores into yes/no, and `learn_guarded` keeps a detector from learning
from what it has just flagged, so a long surge does not teach the model that surges are normal.

Every detector can be cloned (fresh, same parameters), saved (`to_state`, plain JSON-able data) and restored
(`from_state`), and keeps bounded memory whatever the length of the series. tests/detect/test_contract.py
checks every detector registered in `detect.registry` against this contract.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable


class Obs(NamedTuple):
    """One observation of one series."""

    ts: float  # event time, epoch seconds
    value: float  # e.g. people per minute entering the zone
    slot: int  # 15-minute slot of the local day, 0..95 (seasonality without a timezone inside models)
    day_type: str  # "weekday", "holiday", "nye", ... (from domain.profile)
    expected: float | None = None  # the capacity profile's expectation for this slot, when known


@runtime_checkable
class Detector(Protocol):
    name: str

    def learn_one(self, x: Obs) -> None:
        """Update the model with one observation taken as normal."""
        ...

    def score_one(self, x: Obs) -> float:
        """How unusual x is, in [0, 1]; must not change the model. Defined (0.0 or a prior) before learning."""
        ...

    def clone(self) -> Detector:
        """A fresh detector with the same parameters and nothing learned."""
        ...

    def to_state(self) -> dict[str, Any]:
        """Everything learned, as JSON-able data."""
        ...

    def from_state(self, state: dict[str, Any]) -> None:
        """Restore what `to_state` saved (in place). Raises ValueError for data it cannot use."""
        ...


@runtime_checkable
class KnowsNormal(Protocol):
    """Optional beside `Detector`: a detector that learns a series' usual level can say what it is."""

    def normal(self, x: Obs) -> float | None:
        """The value this detector takes as usual at x's time (x.value is ignored), or None when it cannot
        say (no profile for x's day). Must not change the model."""
        ...


class Decision(NamedTuple):
    """Turns a score into a yes/no. `protect` is the score above which the detector must not learn."""

    threshold: float = 0.9
    protect: float = 0.8

    def flagged(self, score: float) -> bool:
        return score >= self.threshold


def learn_guarded(det: Detector, x: Obs, decision: Decision) -> float:
    """Score, then learn only if the observation looks normal. Returns the score."""
    score = det.score_one(x)
    if score < decision.protect:
        det.learn_one(x)
    return score
