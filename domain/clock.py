"""Injected time. Components never call time.time() themselves, so sim/ can replay a day in seconds."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...


class WallClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests and replays move by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start

    def now(self) -> float:
        return self._t

    def set(self, t: float) -> None:
        self._t = t

    def advance(self, seconds: float) -> None:
        self._t += seconds
