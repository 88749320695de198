"""The simulator's clock as the service sees it: the latest simulated time published on crowdflow/sim/clock.

With `service.clock = "sim"` event-time checks and ticks follow the simulation, so an accelerated replay of
New Year's Eve is accepted on any day. Until the first clock message arrives, wall time stands in.
"""

from __future__ import annotations

import msgspec

from domain.clock import Clock
from domain.messages import SIM_CLOCK_TOPIC

__all__ = ["SIM_CLOCK_TOPIC", "SimClock", "SimClockMsg"]


class SimClockMsg(msgspec.Struct):
    epoch: float  # simulated seconds since the epoch
    speed: float = 0.0  # simulated seconds per real second (0: as fast as possible)


_decoder = msgspec.json.Decoder(SimClockMsg)


class SimClock:
    def __init__(self, fallback: Clock) -> None:
        self._fallback = fallback
        self._t: float | None = None

    def now(self) -> float:
        return self._t if self._t is not None else self._fallback.now()

    @property
    def started(self) -> bool:
        return self._t is not None

    def feed(self, payload: bytes) -> bool:
        """Take a clock message; False for a malformed one (the caller counts it). Never moves backwards."""
        try:
            msg = _decoder.decode(payload)
        except msgspec.DecodeError:
            return False
        if self._t is None or msg.epoch > self._t:
            self._t = msg.epoch
        return True
