"""Shared arithmetic of the surge detectors: checking an observation, counting noise, squashing an excess.

Every surge detector measures an excess (0 = at the edge of the usual, 1 = at its alarm point) and turns it
into a score with the same curve, so 0.9 means "at the alarm point" for all of them and a Decision threshold
keeps one meaning across detectors: score = 1 - 0.1 ** excess (0.8 at 0.7, 0.9 at 1, 0.97 at 1.52, 0.99 at 2).

Inflow is a count over a short window (the tracker's 5 minutes), so even a perfectly usual zone wobbles by
Poisson noise: sd of the rate = sqrt(rate / window_min). A quiet zone at night (1/min, 5 people in the
window) wobbles by ±45%, a busy one (60/min) by ±6%; the detectors scale by this so night-time noise is not
a surge and a busy promenade is not held to the quiet zone's slack.

>>> round(score_from_excess(1.0), 3), score_from_excess(0.0), score_from_excess(-2.0)
(0.9, 0.0, 0.0)
>>> round(count_sd(60.0, window_min=5.0, min_rate=2.0), 2)
3.46
"""

from __future__ import annotations

import math

from detect.base import Obs

SLOTS = 96


def score_from_excess(excess: float) -> float:
    """0 for no excess, 0.9 at excess 1 (the alarm point), approaching 1 beyond."""
    if not excess > 0.0:  # also catches NaN
        return 0.0
    return 1.0 - math.pow(0.1, min(excess, 50.0))


def count_sd(rate: float, *, window_min: float, min_rate: float) -> float:
    """Poisson noise (sd, per minute) of a rate counted over `window_min`; `min_rate` keeps it above zero."""
    return math.sqrt(max(rate, min_rate) / window_min)


def check_obs(x: Obs) -> None:
    """Refuse what no detector can use, naming it (the monitor counts these before they get here)."""
    if not (math.isfinite(x.value) and x.value >= 0.0):
        raise ValueError(f"observation value must be a finite rate >= 0, got {x.value!r}")
    if x.expected is not None and not (math.isfinite(x.expected) and x.expected >= 0.0):
        raise ValueError(f"observation expected must be a finite rate >= 0 or None, got {x.expected!r}")
    if not 0 <= x.slot < SLOTS:
        raise ValueError(f"observation slot must be within 0..{SLOTS - 1}, got {x.slot!r}")


def check_kind(state: object, name: str) -> dict[str, object]:
    """The state dict if it was saved by a detector called `name`; ValueError otherwise."""
    if not isinstance(state, dict) or state.get("kind") != name:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"state was saved by {got!r}, not by {name!r}")
    return state
