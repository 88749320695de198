from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from domain.messages import CountMsg, StatusMsg, TotalMsg
from domain.site import Site
from sim.scenario import load_scenario
from sim.stream import Simulation, iter_messages
from tests.sim.helpers import decode, scenario


def test_every_message_decodes_into_its_v1_type(mini_site: Site) -> None:
    msgs = list(iter_messages(mini_site, load_scenario("faults")))
    good = [m for m in msgs if not m.malformed]
    bad = [m for m in msgs if m.malformed]
    assert len(good) > 1000 and len(bad) > 10
    for m in good:
        msg = decode(m)
        assert msg.sensor == m.sensor
        assert m.topic == mini_site.topic_of(mini_site.sensors[m.sensor], m.kind)
        assert msg.ts.utcoffset() == dt.timedelta(hours=8)  # RFC 3339 with the site's offset
    for m in bad:
        try:
            msg = decode(m)
        except msgspec.DecodeError:
            continue
        assert msg.sensor not in mini_site.sensors, m.payload
    assert {m.payload[:1] for m in bad} == {b"{"}
    variants = set()
    for m in bad:
        try:
            variants.add(type(decode(m)).__name__)
        except msgspec.DecodeError as e:
            variants.add(str(e).split(" - ")[0][:20])
    assert len(variants) >= 3  # invalid JSON, wrong type, missing field, unknown sensor


def test_timestamps_are_local_with_offset(mini_site: Site) -> None:
    m = next(iter_messages(mini_site, load_scenario("nye")))
    assert b'"ts":"2026-12-31T18:00:10+08:00"' in m.payload
    assert m.kind == "status" and isinstance(decode(m), StatusMsg)


def test_seeded_runs_are_reproducible(mini_site: Site) -> None:
    sc = scenario(end="18:20:00")
    a = [(m.topic, m.payload) for m in iter_messages(mini_site, sc)]
    b = [(m.topic, m.payload) for m in iter_messages(mini_site, sc)]
    c = [(m.topic, m.payload) for m in iter_messages(mini_site, scenario(end="18:20:00", seed=8))]
    assert a == b
    assert a != c


def test_seq_counts_from_one_per_sensor(mini_site: Site) -> None:
    seqs: dict[str, list[int]] = {}
    for m in iter_messages(mini_site, scenario(end="18:10:00")):
        seqs.setdefault(m.sensor, []).append(decode(m).seq)
    for s in mini_site.sensors:
        assert seqs[s] == list(range(1, len(seqs[s]) + 1))


def test_total_counters_reset_at_local_midnight(mini_site: Site) -> None:
    east = [
        (m, decode(m))
        for m in iter_messages(mini_site, load_scenario("nye"), start="23:55", duration_s=600)
        if m.sensor == "seg1-east" and m.kind == "total"
    ]
    by_time = {msg.ts.strftime("%H:%M"): msg for _, msg in east}
    before, at, after = by_time["23:59"], by_time["00:00"], by_time["00:01"]
    assert isinstance(at, TotalMsg) and isinstance(after, TotalMsg) and isinstance(before, TotalMsg)
    assert at.in_total >= before.in_total > 100
    assert after.in_total < 100 and after.seq == at.seq + 1  # totals restart, seq goes on


def test_window_runs_part_of_a_scenario_from_a_realistic_state(mini_site: Site) -> None:
    sim = Simulation(mini_site, load_scenario("nye"), start="23:00", duration_s=300)
    msgs = list(sim.messages())
    first, last = msgs[0].sim_ts, msgs[-1].sim_ts
    w0 = dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    assert w0 <= first and last < w0 + 300
    assert {m.kind for m in msgs[:5]} == {"status"}
    seg1 = [decode(m) for m in msgs if m.sensor == "seg1-west" and m.kind == "count"]
    assert len(seg1) == 5 and all(isinstance(c, CountMsg) and c.seq > 300 for c in seg1)
    summary = sim.summary()
    assert summary["max_occupancy_by_zone"]["seg-1"] > 2000  # already over capacity, as at 23:00 on NYE
    assert summary["messages"] == len(msgs)


def test_bad_window_is_a_clear_error(mini_site: Site) -> None:
    with pytest.raises(ValueError, match="outside scenario 'nye'"):
        Simulation(mini_site, load_scenario("nye"), start="12:00")
    with pytest.raises(ValueError, match="not a local time"):
        Simulation(mini_site, load_scenario("nye"), start="noon")
