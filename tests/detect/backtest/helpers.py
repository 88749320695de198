"""Small detectors and file helpers for the backtest tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detect.base import Obs


class EWZ:
    """Exponentially weighted z-score of the value, squashed to [0, 1): a tiny but real detector."""

    name = "ewz"

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha
        self.mean = 0.0
        self.var = 1.0
        self.n = 0

    def learn_one(self, x: Obs) -> None:
        if self.n == 0:
            self.mean = x.value
        d = x.value - self.mean
        self.mean += self.alpha * d
        self.var = (1 - self.alpha) * (self.var + self.alpha * d * d)
        self.n += 1

    def score_one(self, x: Obs) -> float:
        if self.n < 5:
            return 0.0
        z = (x.value - self.mean) / math.sqrt(self.var + 1e-9)
        return 1.0 - math.exp(-max(z, 0.0) / 3.0)

    def clone(self) -> EWZ:
        return EWZ(self.alpha)

    def to_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "n": self.n}

    def from_state(self, state: dict[str, Any]) -> None:
        self.mean, self.var, self.n = state["mean"], state["var"], state["n"]


class Threshold:
    """Score 1 at or above `at` people per minute, else 0; records what it saw and learned."""

    name = "threshold"

    def __init__(self, at: float = 50.0) -> None:
        self.at = at
        self.seen: list[Obs] = []
        self.learned: list[Obs] = []

    def learn_one(self, x: Obs) -> None:
        self.learned.append(x)

    def score_one(self, x: Obs) -> float:
        self.seen.append(x)
        return 1.0 if x.value >= self.at else 0.0

    def clone(self) -> Threshold:
        return Threshold(self.at)

    def to_state(self) -> dict[str, Any]:
        return {}

    def from_state(self, state: dict[str, Any]) -> None:
        pass


def write(dir: Path, name: str, text: str) -> Path:
    p = dir / name
    p.write_text(text, encoding="utf-8")
    return p


def minutes_csv(dir: Path, name: str, values: Sequence[float], start: str = "2024-03-04 08:00:00") -> Path:
    """`timestamp,value` at one-minute steps from a naive local start."""
    import pandas as pd

    t0 = pd.Timestamp(start)
    lines = ["timestamp,value"] + [
        f"{(t0 + pd.Timedelta(minutes=i)).strftime('%Y-%m-%dT%H:%M:%S')},{v:g}" for i, v in enumerate(values)
    ]
    return write(dir, name, "\n".join(lines) + "\n")
