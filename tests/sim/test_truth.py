from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

from domain.site import Site
from sim.scenario import load_scenario
from sim.stream import Simulation


def test_nye_puts_a_riverside_segment_over_capacity_and_truth_records_it(
    mini_site: Site, tmp_path: Path
) -> None:
    sim = Simulation(mini_site, load_scenario("nye"))
    n = sum(1 for _ in sim.messages())
    summary = sim.write_truth(tmp_path)

    windows = list(csv.DictReader((tmp_path / "truth_windows.csv").read_text().splitlines()))
    riverside = {z.id for z in mini_site.riverside()}
    over = [w for w in windows if w["zone"] in riverside]
    assert over, windows
    occ: dict[str, list[tuple[str, int]]] = {}
    for row in csv.DictReader((tmp_path / "truth_occupancy.csv").read_text().splitlines()):
        occ.setdefault(row["zone"], []).append((row["ts"], int(row["occupancy"])))
    for w in over:
        cap = mini_site.zones[w["zone"]].capacity
        assert w["start"] <= w["crossing"] < w["end"]
        assert int(w["peak"]) > cap
        series = occ[w["zone"]]
        # The per-minute truth agrees: over capacity at the peak minute, not before the crossing.
        assert max(o for ts, o in series if w["crossing"] <= ts <= w["end"]) > cap
        assert all(o < cap for ts, o in series if ts < w["crossing"])
        crossing = dt.datetime.fromisoformat(w["crossing"])
        assert crossing.utcoffset() == dt.timedelta(hours=8)
    # Over capacity around the countdown, dispersed after it.
    assert any(w["crossing"] < "2026-12-31T23:00" and w["end"] > "2027-01-01T00:00" for w in over)
    last = {z: s[-1][1] for z, s in occ.items()}
    assert all(last[z] < mini_site.zones[z].capacity for z in riverside)

    saved = json.loads((tmp_path / "truth_summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert saved["messages"] == n
    assert sum(saved["messages_by_kind"].values()) == n
    assert saved["malformed"] == 0 and saved["duplicates"] == 0
    assert set(saved["arrivals_by_zone"]) == set(mini_site.zones)
    assert saved["over_capacity_windows"] == len(windows)


def test_faults_run_counts_injected_malformed_and_duplicates(mini_site: Site, tmp_path: Path) -> None:
    sim = Simulation(mini_site, load_scenario("faults"))
    msgs = list(sim.messages())
    saved = sim.write_truth(tmp_path)
    assert saved["malformed"] == sum(m.malformed for m in msgs) > 0
    assert saved["duplicates"] == sum("duplicate" in m.faults for m in msgs) // 2 > 0
    assert saved["messages_by_kind"]["status"] == len(mini_site.sensors)
