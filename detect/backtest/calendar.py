"""Slot, day type and profile expectation for every row at once (the per-row loop only reads arrays).

Same rules as domain.profile.CapacityProfile.slot_of / day_type_of, vectorised: slot = 15-minute slot of
the local day; day type = "nye" on 31 December (when the site's profile knows it, or always without a
site), "holiday" on weekends and the fixed public holidays, else "weekday".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from domain.profile import FIXED_HOLIDAYS, CapacityProfile

DAY_TYPES: tuple[str, ...] = ("weekday", "holiday", "nye")


def slots_and_day_types(
    ts: npt.NDArray[np.float64], tz: str, *, with_nye: bool = True
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(slot 0..95, index into DAY_TYPES) for epoch seconds `ts`, in local time `tz`."""
    local = pd.DatetimeIndex(pd.to_datetime(ts, unit="s", utc=True)).tz_convert(tz)
    slot = (local.hour.to_numpy() * 60 + local.minute.to_numpy()) // 15
    month, day = local.month.to_numpy(), local.day.to_numpy()
    md = month * 100 + day
    holiday = np.isin(md, [m * 100 + d for m, d in FIXED_HOLIDAYS]) | (local.day_of_week.to_numpy() >= 5)
    kind = np.where(holiday, 1, 0)
    if with_nye:
        kind = np.where(md == 1231, 2, kind)
    return slot.astype(np.int64), kind.astype(np.int64)


def expected_per_min(
    profile: CapacityProfile, zone: str, slot: npt.NDArray[np.int64], day_type: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """The profile's expected arrivals per minute into `zone` for each row (its slot / 15)."""
    out = np.empty(len(slot), dtype=np.float64)
    pos = profile.zone_pos[zone]
    for k, name in enumerate(DAY_TYPES):
        rows = day_type == k
        if rows.any():
            out[rows] = profile.arrivals(name)[pos, slot[rows]] / 15.0
    return out
