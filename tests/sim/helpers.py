"""Small scenarios on the mini site, written inline so each test shows what it runs."""

from __future__ import annotations

import msgspec

from domain.messages import MESSAGE_TYPES, Message
from sim.scenario import Scenario, parse_scenario
from sim.wire import SimMessage


def scenario(body: str = "", *, start: str = "18:00:00", end: str = "19:00:00", seed: int = 7) -> Scenario:
    text = f"""
name = "test"
description = "inline test scenario"
day = 2026-06-17
day_type = "weekday"
start = {start}
end = {end}
step_s = 10
seed = {seed}
{body}
"""
    return parse_scenario(text, "inline.toml")


def decode(m: SimMessage) -> Message:
    return msgspec.json.decode(m.payload, type=MESSAGE_TYPES[m.kind])
