"""Baseline: inflow against the capacity profile's expectation, squashed; learns nothing.

ratio = (value + pad) / (expected + pad), where `pad` (people per minute) keeps a near-empty slot from
turning three people into a "surge"; excess = (ratio - 1) / (alarm_ratio - 1), so the score is 0.9 at
`alarm_ratio` times the profile. Low flow is never a surge: a ratio at or below 1 scores 0.

It is the reference the learning detectors must beat, and the prior they start from.

>>> from detect.base import Obs
>>> det = ProfileRatio(alarm_ratio=2.0, pad=0.0)
>>> det.score_one(Obs(ts=0.0, value=30.0, slot=80, day_type="holiday", expected=30.0))
0.0
>>> round(det.score_one(Obs(ts=0.0, value=60.0, slot=80, day_type="holiday", expected=30.0)), 3)
0.9
"""

from __future__ import annotations

from typing import Any

from detect.base import Obs
from detect.surge.excess import check_kind, check_obs, score_from_excess


class ProfileRatio:
    name = "profile_ratio"

    def __init__(self, *, alarm_ratio: float = 1.8, pad: float = 5.0) -> None:
        if not alarm_ratio > 1.0:
            raise ValueError(f"alarm_ratio must be above 1, got {alarm_ratio}")
        if not pad >= 0.0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.alarm_ratio = alarm_ratio
        self.pad = pad

    def ratio(self, x: Obs) -> float | None:
        if x.expected is None or x.expected + self.pad <= 0.0:
            return None
        return (x.value + self.pad) / (x.expected + self.pad)

    def learn_one(self, x: Obs) -> None:
        check_obs(x)  # nothing to learn, but bad input is refused all the same

    def score_one(self, x: Obs) -> float:
        check_obs(x)
        r = self.ratio(x)
        if r is None:
            return 0.0  # no profile for this slot: no opinion
        return score_from_excess((r - 1.0) / (self.alarm_ratio - 1.0))

    def clone(self) -> ProfileRatio:
        return ProfileRatio(alarm_ratio=self.alarm_ratio, pad=self.pad)

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.name}

    def from_state(self, state: dict[str, Any]) -> None:
        check_kind(state, self.name)
