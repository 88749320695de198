"""Expected occupancy from the capacity profile (Little's law, exponential stays), for calibration tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from domain.profile import CapacityProfile


def expected_occupancy(profile: CapacityProfile, day_type: str) -> npt.NDArray[np.float64]:
    """Array [zone, minute] of people present if arrivals follow the profile and stays average dwell_min.

    The day is run three times over so people still present at midnight carry over (a steady state).
    """
    per_min = np.repeat(profile.arrivals(day_type) / 15.0, 15, axis=1)
    dwell = np.array([profile.site.zones[z].dwell_min for z in profile.zone_ids])
    keep = np.exp(-1.0 / dwell)
    occ = np.zeros(len(dwell))
    out = np.empty_like(per_min)
    for _ in range(3):
        for t in range(per_min.shape[1]):
            occ = occ * keep + per_min[:, t]
            out[:, t] = occ
    return out
