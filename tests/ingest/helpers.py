"""Builders for sensor messages in tests: a site with every sensor kind, topics and JSON payloads."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from domain.loader import parse_site
from domain.site import Site

FIXTURE = Path(__file__).parent.parent / "fixtures" / "mini_site.toml"
SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=SHANGHAI).timestamp()

# mini_site has counters and a density camera; tests also need an area sensor.
_EXTRA = """
[[sensors]]
id = "plaza-area"
zone = "plaza"
kind = "area"
"""


def site_with_area() -> Site:
    return parse_site(FIXTURE.read_text(encoding="utf-8") + _EXTRA, "mini+area")


ZONE_OF = {
    "seg1-west": "seg-1",
    "seg1-east": "seg-1",
    "seg2-gate": "seg-2",
    "plaza-gate": "plaza",
    "plaza-cam": "plaza",
    "plaza-area": "plaza",
}


def topic(sensor: str, kind: str) -> str:
    return f"dt/crowdflow/riverside/{ZONE_OF[sensor]}/{sensor}/{kind}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, SHANGHAI).isoformat()


def payload(sensor: str, seq: int, ts: float, **fields: Any) -> bytes:
    return json.dumps({"v": 1, "sensor": sensor, "ts": iso(ts), "seq": seq, **fields}).encode()


def count(
    sensor: str, seq: int, ts: float, cin: int, cout: int, interval_s: float = 60.0
) -> tuple[str, bytes]:
    return topic(sensor, "count"), payload(sensor, seq, ts, interval_s=interval_s, **{"in": cin, "out": cout})


def total(sensor: str, seq: int, ts: float, in_total: int, out_total: int) -> tuple[str, bytes]:
    return topic(sensor, "total"), payload(sensor, seq, ts, in_total=in_total, out_total=out_total)
