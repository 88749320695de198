from __future__ import annotations

import itertools
from collections import Counter

from domain.messages import CountMsg, DensityMsg, TotalMsg
from domain.site import Site
from sim.stream import Simulation
from sim.wire import SimMessage
from tests.sim.helpers import decode, scenario


def run(site: Site, faults: str) -> tuple[list[SimMessage], Simulation]:
    sim = Simulation(site, scenario(faults, end="19:00:00"))
    return list(sim.messages()), sim


def of(msgs: list[SimMessage], sensor: str) -> list[SimMessage]:
    return [m for m in msgs if m.sensor == sensor and m.kind != "status"]


def minute(m: SimMessage) -> str:
    return decode(m).ts.strftime("%H:%M:%S")


def fault(sensor: str, kind: str, start: str, end: str, params: str = "") -> str:
    extra = f"\nparams = {{ {params} }}" if params else ""
    return f'[[faults]]\nsensor = "{sensor}"\ntype = "{kind}"\nstart = {start}\nend = {end}{extra}\n'


def test_dropout_sends_nothing_but_seq_shows_the_gap(mini_site: Site) -> None:
    msgs, sim = run(mini_site, fault("seg2-gate", "dropout", "18:10:00", "18:20:00"))
    gate = of(msgs, "seg2-gate")
    assert not any("18:10:00" <= minute(m) < "18:20:00" for m in gate)
    seqs = [decode(m).seq for m in gate]
    assert max(b - a for a, b in itertools.pairwise(seqs)) == 11  # ten readings numbered, never sent
    assert sim.summary()["faults_by_type"] == {"dropout": 10}


def test_stuck_counter_and_camera_repeat_their_value(mini_site: Site) -> None:
    msgs, _ = run(
        mini_site,
        fault("seg2-gate", "stuck", "18:10:00", "18:30:00")
        + fault("plaza-cam", "stuck", "18:10:00", "18:30:00"),
    )
    gate = [decode(m) for m in of(msgs, "seg2-gate") if "18:10:00" <= minute(m) < "18:30:00"]
    assert len(gate) == 20 and len({(c.in_, c.out) for c in gate if isinstance(c, CountMsg)}) == 1
    assert len({c.seq for c in gate}) == 20  # the device still numbers its messages
    cam = [decode(m) for m in of(msgs, "plaza-cam") if "18:10:00" <= minute(m) < "18:30:00"]
    assert len({c.density for c in cam if isinstance(c, DensityMsg)}) == 1
    after = [decode(m) for m in of(msgs, "plaza-cam") if minute(m) >= "18:31:00"]
    assert len({c.density for c in after if isinstance(c, DensityMsg)}) > 5


def test_reset_drops_totals_and_restarts_seq(mini_site: Site) -> None:
    msgs, sim = run(mini_site, fault("seg1-east", "reset", "18:20:00", "18:23:00"))
    east = [decode(m) for m in of(msgs, "seg1-east")]
    assert all(isinstance(t, TotalMsg) for t in east)
    stamps = [t.ts.strftime("%H:%M") for t in east]
    assert "18:21" not in stamps and "18:19" in stamps and "18:23" in stamps
    i = stamps.index("18:23")
    before, after = east[i - 1], east[i]
    assert isinstance(before, TotalMsg) and isinstance(after, TotalMsg)
    assert before.in_total > 500 and after.in_total < 100 and after.out_total < 100
    assert after.seq == 1 and east[i + 1].seq == 2
    assert sim.summary()["suppressed_by_type"] == {"reset": 3}  # readings lost while it rebooted
    assert sim.summary()["faults_by_type"] == {"reset": 4}  # and the first one after, from zero


def test_duplicates_are_sent_twice(mini_site: Site) -> None:
    msgs, sim = run(mini_site, fault("seg2-gate", "duplicate", "18:10:00", "18:20:00", "every = 2"))
    payloads = Counter(m.payload for m in of(msgs, "seg2-gate"))
    assert sorted(payloads.values()).count(2) == 5
    tagged = [m for m in msgs if "duplicate" in m.faults]
    assert all(a.payload == b.payload for a, b in zip(tagged[::2], tagged[1::2], strict=True))
    assert sim.summary()["duplicates"] == 5


def test_late_messages_arrive_after_their_event_time(mini_site: Site) -> None:
    msgs, _ = run(mini_site, fault("seg2-gate", "late", "18:10:00", "18:20:00", "delay_s = 150"))
    late = [m for m in msgs if "late" in m.faults]
    assert len(late) == 10 and all(m.sim_ts - m.event_ts == 150 for m in late)
    assert [m.sim_ts for m in msgs] == sorted(m.sim_ts for m in msgs)  # stream is in delivery order
    events = [m.event_ts for m in of(msgs, "seg2-gate")]
    assert events != sorted(events)


def test_out_of_order_swaps_neighbours(mini_site: Site) -> None:
    msgs, _ = run(mini_site, fault("seg2-gate", "out_of_order", "18:10:00", "18:20:00"))
    seqs = [decode(m).seq for m in of(msgs, "seg2-gate")]
    assert sorted(seqs) == list(range(2, len(seqs) + 2))  # seq 1 was the status message
    swapped = [i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1]]
    assert len(swapped) == 5


def test_clock_skew_shifts_payload_time_only(mini_site: Site) -> None:
    msgs, _ = run(mini_site, fault("plaza-gate", "clock_skew", "18:10:00", "18:20:00", "skew_s = -600"))
    skewed = [m for m in msgs if "clock_skew" in m.faults]
    assert len(skewed) == 10
    assert all(decode(m).ts.timestamp() == m.event_ts - 600 == m.sim_ts - 600 for m in skewed)


def test_malformed_messages_are_flagged_and_counted(mini_site: Site) -> None:
    msgs, sim = run(mini_site, fault("plaza-cam", "malformed", "18:10:00", "18:30:00", "every = 2"))
    bad = [m for m in msgs if m.malformed]
    assert len(bad) == 10  # the camera reports once a minute; every second message is garbled
    assert sim.summary()["malformed"] == 10 == sim.summary()["faults_by_type"]["malformed"]
    ghosts = [m for m in bad if b"-ghost" in m.payload]
    # Variants in turn: invalid JSON, wrong type, missing field, unknown sensor.
    assert len(ghosts) == 2 and all("/plaza-cam-ghost/" in m.topic for m in ghosts)


def test_shipped_fault_scenario_has_every_fault_type(mini_site: Site) -> None:
    from sim.scenario import FAULT_TYPES, load_scenario

    sim = Simulation(mini_site, load_scenario("faults"))
    for _ in sim.messages():
        pass
    assert set(sim.summary()["faults_by_type"]) == set(FAULT_TYPES)
