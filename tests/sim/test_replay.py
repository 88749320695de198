from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from domain.messages import CountMsg, DensityMsg, TotalMsg
from domain.site import Site
from sim.replay import BadRow, ReplayError, iter_csv, replay_csv
from sim.wire import SimMessage
from tests.servers import Server
from tests.sim.helpers import decode
from tests.sim.mqtt_helpers import Collector

FLOWS = """timestamp,sensor_id,in,out
2026-12-31T23:00:00+08:00,seg2-gate,12,3
2026-12-31 23:01:00,seg2-gate,15,4
2026-12-31T15:02:00Z,seg2-gate,9,9
2026-12-31T23:01:00+08:00,seg1-east,5000,4100
2026-12-31T23:02:00+08:00,ghost-7,1,1
2026-12-31T23:02:00+08:00,ghost-7,1,1
not-a-time,seg2-gate,1,1
2026-12-31T23:03:00+08:00,seg2-gate,many,1
2026-12-31T23:03:00+08:00,seg2-gate,-2,1
2026-12-31T23:03:00+08:00,plaza-cam,1,1
2026-12-31T23:04:00+08:00,seg2-gate,1

2026-12-31T23:05:00+08:00,plaza-gate,7,0
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rec.csv"
    p.write_text(text)
    return p


def test_rows_become_v1_messages_and_bad_rows_are_counted(mini_site: Site, tmp_path: Path) -> None:
    items = list(iter_csv(write(tmp_path, FLOWS), mini_site))
    msgs = [i for i in items if isinstance(i, SimMessage)]
    bad = [i for i in items if isinstance(i, BadRow)]
    assert [m.sensor for m in msgs] == ["seg2-gate", "seg2-gate", "seg2-gate", "seg1-east", "plaza-gate"]
    first, second, third = (decode(m) for m in msgs[:3])
    assert isinstance(first, CountMsg) and (first.in_, first.out, first.seq) == (12, 3, 1)
    assert first.interval_s == 60.0  # the sensor's own interval for its first row
    assert isinstance(second, CountMsg) and second.interval_s == 60.0 and second.seq == 2
    assert second.ts.isoformat() == "2026-12-31T23:01:00+08:00"  # naive = site timezone
    assert isinstance(third, CountMsg) and third.ts.timestamp() == msgs[0].sim_ts + 120
    total = decode(msgs[3])
    assert isinstance(total, TotalMsg) and (total.in_total, total.out_total, total.seq) == (5000, 4100, 1)
    assert msgs[3].topic == "dt/crowdflow/riverside/seg-1/seg1-east/total"
    assert [b.sensor for b in bad if b.sensor] == ["ghost-7", "ghost-7"]
    reasons = {b.line: b.reason for b in bad if not b.sensor}
    assert sorted(reasons) == [8, 9, 10, 11, 12]
    assert "whole number" in reasons[9] and ">= 0" in reasons[10]
    assert "density sensor" in reasons[11] and "columns" in reasons[12]


def test_count_rows_for_density_sensors(mini_site: Site, tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "timestamp,sensor_id,count\n2026-12-31T23:00:00+08:00,plaza-cam,2500\n"
        "2026-12-31T23:00:00+08:00,seg2-gate,10\n",
    )
    items = list(iter_csv(p, mini_site))
    assert isinstance(items[0], SimMessage)
    d = msgspec.json.decode(items[0].payload, type=DensityMsg)
    assert d.density == 2.5  # 2500 people on the plaza's 1000 m²
    assert isinstance(items[1], BadRow) and "counter" in items[1].reason


def test_unusable_header_is_a_clear_error(mini_site: Site, tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"rec\.csv: header time,sensor,n not understood"):
        list(iter_csv(write(tmp_path, "time,sensor,n\n1,2,3\n"), mini_site))
    with pytest.raises(ReplayError, match="cannot read"):
        list(iter_csv(tmp_path / "missing.csv", mini_site))


def test_replay_publishes_and_reports(mosquitto: Server, mini_site: Site, tmp_path: Path) -> None:
    p = write(tmp_path, FLOWS)
    expected = [(m.topic, m.payload) for m in iter_csv(p, mini_site) if isinstance(m, SimMessage)]
    sub = Collector(mosquitto.host, mosquitto.port)
    try:
        s = replay_csv(p, mini_site, host=mosquitto.host, port=mosquitto.port, speed=0)
        assert s.published == s.acked == 5
        assert sub.wait_for(5) == 5 and sorted(sub.received) == sorted(expected)
    finally:
        sub.close()
    assert s.bad_rows == 5 and len(s.bad_row_examples) == 5 and s.bad_row_examples[0].startswith("line 8:")
    assert s.unknown_sensors == {"ghost-7": 2}
    assert s.rows == 12 and s.first_ts == "2026-12-31T23:00:00+08:00"


def test_replay_is_paced_by_row_timestamps(mosquitto: Server, mini_site: Site, tmp_path: Path) -> None:
    rows = "".join(f"2026-12-31T23:{m:02d}:00+08:00,seg2-gate,{m},0\n" for m in range(5))
    p = write(tmp_path, "timestamp,sensor_id,in,out\n" + rows)
    s = replay_csv(p, mini_site, host=mosquitto.host, port=mosquitto.port, speed=240)
    assert s.published == 5 and 0.9 <= s.wall_s < 3.0  # four minutes at 240x
