"""Ingest's per-sensor state in columns: streams numbered by site index and allocated with the site, the
ordering state (ingest.sequencer.Sequences) keeping only numbers per stream, the decoder handing on the site's
own sensor ids."""

from __future__ import annotations

import gc
import tracemalloc

import msgspec

from domain.messages import CountMsg
from domain.site import Site
from ingest.decoder import Decoder
from ingest.pipeline import Ingestor
from ingest.sequencer import Sequences
from tests.ingest.helpers import T0, count, payload, site_with_area, topic


def scaled(site: Site, copies: int) -> Site:
    sensors = tuple(msgspec.structs.replace(s, id=f"{s.id}-{k}") for k in range(copies) for s in site.file.sensors)
    return Site(msgspec.structs.replace(site.file, sensors=sensors), site.path)


def test_site_index_is_site_order() -> None:
    site = site_with_area()
    assert list(site.index) == list(site.sensors)
    assert [site.index[sid] for sid in site.sensors] == list(range(len(site.sensors)))


def test_decoded_sensor_is_the_site_own_string() -> None:
    site = site_with_area()
    msg = Decoder(site).decode(*count("seg1-west", 1, T0, 1, 0))
    assert isinstance(msg, CountMsg)
    key = next(k for k in site.sensors if k == "seg1-west")
    assert msg.sensor is key  # not an equal copy per message: what models keep is the site's one string


def test_first_readings_of_every_sensor_allocate_nothing_per_sensor() -> None:
    """Every sensor's own stream exists from the start: a first reading from each of 3,000 sensors leaves no
    object behind per sensor (a stream object, a dict entry and a sequencer each were about 260 bytes)."""
    base = site_with_area()
    site = scaled(base, 500)
    ing = Ingestor(site)
    feed = []
    for sid, s in site.sensors.items():
        if s.kind == "counter" and s.mode == "total":
            feed.append((site.topic_of(s, "total"), payload(sid, 0, T0, in_total=5, out_total=2)))
        elif s.kind == "counter":
            feed.append((site.topic_of(s, "count"), payload(sid, 0, T0, interval_s=60.0, **{"in": 1, "out": 0})))
        elif s.kind == "area":
            feed.append((site.topic_of(s, "occupancy"), payload(sid, 0, T0, count=3)))
        else:
            feed.append((site.topic_of(s, "density"), payload(sid, 0, T0, density=0.5)))
    ing.feed(*feed[0], T0)  # one first: whatever is made once per process
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for t, body in feed[1:]:
            ing.feed(t, body, T0)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert ing.stats.accepted == len(site.sensors)
    assert grown < 8 * len(site.sensors), grown


def test_status_streams_are_numbered_after_the_sensors_and_kept_apart() -> None:
    site = site_with_area()
    rig = Ingestor(site)
    st = (topic("plaza-cam", "status"), payload("plaza-cam", 1, T0, state="online"))
    assert [r.kind for r in rig.feed(*st, T0)] == ["status"]
    assert rig.feed(*st, T0) == []  # a duplicate of its own stream
    den = (topic("plaza-cam", "density"), payload("plaza-cam", 1, T0, density=1.0))
    assert [r.kind for r in rig.feed(*den, T0)] == ["density"]  # seq 1 of another stream: not a duplicate
    assert len(rig._seqs) == len(site.sensors) + 1
    assert rig.stats.duplicates == 1


def test_sequences_keep_nothing_for_a_stream_once_its_gap_is_resolved() -> None:
    seqs: Sequences[int] = Sequences(lateness_s=60.0, streams=3)
    out: list[int] = []
    assert seqs.offer(1, 0, 0.0, 0.0, 0, out) == "in_order"
    assert seqs.offer(1, 2, 1.0, 1.0, 2, out) == "held"
    assert seqs.held_count(1) == 1 and list(seqs.held) == [1]
    assert seqs.offer(2, 7, 1.0, 1.0, 7, out) == "in_order"  # another stream, its own numbers
    assert seqs.offer(1, 1, 1.0, 1.0, 1, out) == "in_order"
    assert out == [0, 7, 1, 2] and seqs.held == {} and seqs.missing == 0
    assert seqs.offer(1, 5, 2.0, 2.0, 5, out) == "held"
    seqs.expire(1, 200.0, out)
    assert out[-1] == 5 and seqs.held == {} and seqs.missing == 2
    assert seqs.offer(1, 4, 1.5, 3.0, 4, out) == "late"  # in the given-up gap (not newer): once
    assert seqs.offer(1, 4, 1.5, 3.0, 4, out) == "duplicate"
    assert seqs.add() == 3 and len(seqs) == 4
