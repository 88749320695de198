"""The vectorised slot / day type / expectation agree with domain.profile row by row."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detect.backtest.calendar import DAY_TYPES, expected_per_min, slots_and_day_types
from domain.profile import CapacityProfile
from domain.site import Site


def sample_times() -> npt.NDArray[np.float64]:
    # Every 37 minutes over 2024 and into 2025: weekends, 1 Oct week, 31 Dec, 1 Jan, all slots.
    return np.arange(1704038400.0, 1704038400.0 + 400 * 86400, 37 * 60.0)


def test_slots_and_day_types_match_the_capacity_profile(mini_site: Site) -> None:
    prof = CapacityProfile(mini_site)
    ts = sample_times()
    slot, kind = slots_and_day_types(ts, prof.tz.key, with_nye=True)
    names = [DAY_TYPES[k] for k in kind.tolist()]
    assert slot.tolist() == [prof.slot_of(t) for t in ts.tolist()]
    assert names == [prof.day_type_of(t) for t in ts.tolist()]
    assert {"weekday", "holiday", "nye"} == set(names)


def test_without_nye_the_last_day_of_the_year_is_an_ordinary_day() -> None:
    t = np.array([1735603200.0 + 12 * 3600])  # 2024-12-31 (a Tuesday) noon, Shanghai
    assert slots_and_day_types(t, "Asia/Shanghai", with_nye=True)[1].tolist() == [2]
    assert slots_and_day_types(t, "Asia/Shanghai", with_nye=False)[1].tolist() == [0]


def test_expected_per_minute_matches_the_profile(mini_site: Site) -> None:
    prof = CapacityProfile(mini_site)
    ts = sample_times()[:3000]
    slot, kind = slots_and_day_types(ts, prof.tz.key)
    got = expected_per_min(prof, "seg-1", slot, kind)
    want = [prof.expected_rate_per_min("seg-1", t) for t in ts.tolist()]
    assert np.allclose(got, want)
