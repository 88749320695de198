"""Smoke test of benchmarks/ingest_partitioned.py: the partitions cover every zone and every reading of the feed
exactly once (each sensor's topic matches the filters of one partition only), and the quick run (a real
Mosquitto, one worker on all zones and two on halves of them running the service's ingest, the bare consumers,
two rounds) drains every reading with nothing lost or rejected. No timed assertion: rates are only checked to
be there."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from benchmarks._common import ReadingFeed
from benchmarks.ingest_partitioned import (
    partition_site,
    partition_zones,
    readings_per_zone,
    split_neighbours,
    zone_filters,
)
from benchmarks.scaled_site import write_scaled_site
from domain.loader import load_site
from tests.benchmarks.quick import run_quick


@pytest.mark.parametrize("n", [1, 2, 3])
def test_partitions_cover_every_zone_sensor_and_reading_once(tmp_path: Path, n: int) -> None:
    site = load_site(write_scaled_site(1_000, tmp_path / "site.toml"))
    groups = partition_zones(site, n)
    assert len(groups) == n
    assert sorted(z for g in groups for z in g) == sorted(site.zones)
    feed = ReadingFeed(site)
    filters = [zone_filters(site, g) for g in groups]
    for i, sensor in enumerate(feed.sensors):
        owners = [k for k, fs in enumerate(filters) if any(mqtt.topic_matches_sub(f, feed.topics[i]) for f in fs)]
        assert len(owners) == 1, (sensor.id, owners)
        assert sensor.zone in groups[owners[0]]
    per_zone = readings_per_zone(feed, 2_500)
    assert sum(per_zone.values()) == 2_500
    assert sum(sum(per_zone[z] for z in g) for g in groups) == 2_500
    sensors = [len(partition_site(site, g).sensors) for g in groups]
    assert sum(sensors) == len(site.sensors)
    assert max(sensors) - min(sensors) <= max(len(site.sensors_of(z)) for z in site.zones)  # balanced by sensors
    split, pairs = split_neighbours(site, groups)
    assert pairs > 0
    assert (split == 0) == (n == 1)


def test_quick_run_drains_every_reading_in_every_set() -> None:
    pairs = run_quick("ingest_partitioned.py")
    assert pairs["rounds"] == "2"
    assert pairs["lost"] == "0"  # every worker of every set got all of its partition's readings, both rounds
    assert pairs["rejected"] == "0"  # and its ingest accepted each one (no duplicate, nothing invalid)
    assert pairs["bare_lost"] == "0"
    for key in ("p1_msgs_per_s_300", "p2_msgs_per_s_300", "bare_msgs_per_s_300", "paho_msgs_per_s_300",
                "c_msgs_per_s_300", "p2_vs_bare_300", "p2_vs_paho_300", "p2_speedup_300"):  # fmt: skip
        assert float(pairs[key]) > 0, key
    assert "p3_msgs_per_s_300" not in pairs  # --quick measures N = 1 and 2 only
