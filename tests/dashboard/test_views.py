"""dashboard.views for the live wall's charts, map and health panel: the learned normal inflow, the outlook,
sensor problems per zone, and each zone's level thresholds in the site view."""

from __future__ import annotations

import json

from dashboard.views import site_view, zone_view
from domain.loader import load_site
from domain.site import Site
from domain.values import ZoneState


def state(**extra: object) -> ZoneState:
    base: dict[str, object] = dict(
        zone="seg-1", ts=1_798_726_500.0, occupancy=1234.4, capacity=2000, share=0.6172, density=0.6172,
        inflow_per_min=55.55, outflow_per_min=20.0, arrivals_today=4321,
    )  # fmt: skip
    base.update(extra)
    return ZoneState(**base)  # type: ignore[arg-type]


def test_zone_view_gives_the_normal_inflow_outlook_and_sensor_issues(mini_site: Site) -> None:
    st = state(
        expected_inflow_per_min=38.149,
        outlook=[(5, 1300.4, 1250.6, 1350.5), (30, 1710.0, 1500.2, 1919.9)],
        sensor_issues={"seg1-west": "offline: no data for 6 min"},
        healthy=False,
    )
    v = zone_view(mini_site.zones["seg-1"], st)
    assert v["expected_inflow_per_min"] == 38.1
    assert v["outlook"] == [[5, 1300, 1251, 1350], [30, 1710, 1500, 1920]]  # whole people
    assert all(isinstance(x, int) for row in v["outlook"] for x in row)
    assert v["sensor_issues"] == {"seg1-west": "offline: no data for 6 min"}
    assert v["sensor_issues"] is not st.sensor_issues  # the view is the hub's own copy
    assert json.loads(json.dumps(v)) == v  # plain JSON: REST and the push stream send it as is


def test_zone_view_defaults_and_the_no_state_branch(mini_site: Site) -> None:
    v = zone_view(mini_site.zones["seg-1"], state())
    assert (v["expected_inflow_per_min"], v["outlook"], v["sensor_issues"]) == (None, [], {})
    none = zone_view(mini_site.zones["seg-1"], None)
    assert (none["expected_inflow_per_min"], none["outlook"], none["sensor_issues"]) == (None, [], {})
    assert set(none) == set(v)  # the page finds every key whether or not the zone has data


def test_site_view_zones_carry_their_level_thresholds(mini_site: Site) -> None:
    zones = {z["id"]: z for z in site_view(mini_site)["zones"]}
    assert zones["seg-1"]["thresholds"] == [
        {"level": 1, "share": 0.6},
        {"level": 2, "share": 0.7},
        {"level": 3, "share": 0.8},
        {"level": 4, "share": 0.95},
    ]
    lujiazui = {z["id"]: z for z in site_view(load_site())["zones"]}
    # Metro exits have their own, lower shares in the site file.
    assert [t["share"] for t in lujiazui["metro-exit-1"]["thresholds"]] == [0.5, 0.6, 0.7, 0.85]
