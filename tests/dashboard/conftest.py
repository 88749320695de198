"""Builders for dashboard tests: zone states, district states and encoded alerts on the mini site."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.hub import Hub
from domain.clock import ManualClock
from domain.levels import Level
from domain.site import Site
from domain.values import DistrictState, ZoneState

T0 = 1_767_225_600.0  # 2026-01-01 08:00 Asia/Shanghai


def zone_state(zone: str, occupancy: float, *, capacity: int = 2000, level: Level = Level.NORMAL,
               ts: float = T0, healthy: bool = True) -> ZoneState:  # fmt: skip
    return ZoneState(
        zone=zone, ts=ts, occupancy=occupancy, capacity=capacity, share=occupancy / capacity,
        density=occupancy / 2000, inflow_per_min=12.0, outflow_per_min=8.0, arrivals_today=5000,
        level=level, healthy=healthy,
    )  # fmt: skip


def district_state(ts: float = T0, people_now: float = 3100.0) -> DistrictState:
    return DistrictState(
        ts=ts, people_now=people_now, arrivals_today=40_000, expected_arrivals_so_far=32_000.0,
        peak_day_visits=100_000, zones_by_level={"normal": 2, "II": 1},
    )  # fmt: skip


def alert(
    aid: str, zone: str = "seg-1", level: int = 3, state: str = "raised", ts: float = T0
) -> dict[str, Any]:
    return {
        "id": aid, "zone": zone, "level": level, "peak_level": level, "cause": "capacity", "state": state,
        "opened_at": ts, "updated_at": ts, "message": f"{zone} at 82% of capacity",
    }  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def hub(mini_site: Site, clock: ManualClock) -> Hub:
    return Hub(mini_site, clock=clock)
