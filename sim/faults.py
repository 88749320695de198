"""Sensor faults applied to the emitted stream, as a real device or network would produce them.

Per sensor, in this order: reset (device reboots: down during the window, then seq from 1 and totals from 0)
and dropout (readings numbered but never sent) decide whether a reading leaves at all; stuck freezes the
values; clock_skew shifts the payload ts; malformed garbles the payload; duplicate sends it twice; late
and out_of_order change when it is delivered. Every affected message is tagged so ground truth can count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

import msgspec

from domain.messages import CountMsg, DensityMsg, Message, OccupancyMsg, TotalMsg, encode
from domain.site import Site
from sim.scenario import Fault, Scenario, fault_sensor
from sim.sensors import Emitted
from sim.wire import SimMessage, ghost_sensor, malformed_payload


@dataclass
class _Active:
    fault: Fault
    start: float
    end: float
    seen: int = 0  # messages of this sensor inside the window so far (for every-n-th)
    done: bool = False  # reset: the reboot has happened

    def covers(self, ts: float) -> bool:
        return self.start <= ts < self.end


@dataclass
class _SensorState:
    seq: int = 0
    last: Message | None = None  # the last reading sent (what a stuck sensor repeats)
    frozen: Message | None = None
    last_totals: tuple[int, int] = (0, 0)  # true running totals of the last reading
    offset: tuple[int, int] = (0, 0)  # totals at the last reboot
    held: list[SimMessage] = field(default_factory=list)  # out_of_order: waits for the next message


def _values(msg: Message) -> dict[str, object]:
    if isinstance(msg, CountMsg):
        return {"in_": msg.in_, "out": msg.out}
    if isinstance(msg, TotalMsg):
        return {"in_total": msg.in_total, "out_total": msg.out_total}
    if isinstance(msg, OccupancyMsg):
        return {"count": msg.count}
    if isinstance(msg, DensityMsg):
        return {"density": msg.density}
    return {}


class FaultInjector:
    def __init__(self, site: Site, scenario: Scenario, window: tuple[float, float]) -> None:
        self.site = site
        tz = ZoneInfo(site.info.timezone)
        self.window = window
        self.by_sensor: dict[str, list[_Active]] = {}
        for f in scenario.faults:
            sid = fault_sensor(f, site)
            span = (scenario.at(f.start, tz), scenario.at(f.end, tz))
            self.by_sensor.setdefault(sid, []).append(_Active(f, *span))
        self.state: dict[str, _SensorState] = {s: _SensorState() for s in site.sensors}
        self.suppressed: Counter[str] = Counter()  # readings never sent, by fault type (inside the window)

    def _count_lost(self, ts: float, kind: str) -> None:
        if self.window[0] <= ts < self.window[1]:
            self.suppressed[kind] += 1

    def apply(self, e: Emitted) -> list[SimMessage]:
        """The messages (zero, one or more) that a reading turns into."""
        st = self.state[e.sensor]
        faults = self.by_sensor.get(e.sensor, [])
        msg = e.msg
        tags: list[str] = []
        true_totals = (msg.in_total, msg.out_total) if isinstance(msg, TotalMsg) else st.last_totals
        # After midnight the device's totals restarted anyway: the reboot offset no longer applies.
        if true_totals[0] < st.offset[0] or true_totals[1] < st.offset[1]:
            st.offset = (0, 0)
        for a in faults:
            if a.fault.type == "reset" and not a.done and e.ts >= a.start:
                if a.covers(e.ts):  # rebooting: nothing is counted or sent
                    st.last_totals = true_totals
                    self._count_lost(e.ts, "reset")
                    return self._release(st, [])
                a.done = True
                st.seq = 0
                st.offset = st.last_totals
                tags.append("reset")
        st.last_totals = true_totals
        st.seq += 1
        active = [a for a in faults if a.covers(e.ts)]
        types = {a.fault.type for a in active}
        if "dropout" in types:
            self._count_lost(e.ts, "dropout")
            return self._release(st, [])
        if isinstance(msg, TotalMsg) and st.offset != (0, 0):
            msg = msgspec.structs.replace(
                msg, in_total=msg.in_total - st.offset[0], out_total=msg.out_total - st.offset[1]
            )
        if "stuck" in types:
            if st.frozen is None:
                st.frozen = st.last or msg
            msg = msgspec.structs.replace(msg, **_values(st.frozen))
            tags.append("stuck")
        else:
            st.frozen = None
        st.last = msg
        msg = msgspec.structs.replace(msg, seq=st.seq)
        for a in active:
            if a.fault.type == "clock_skew":
                msg = msgspec.structs.replace(msg, ts=msg.ts + timedelta(seconds=a.fault.skew_s))
                tags.append("clock_skew")
        payload, malformed, shown = encode(msg), False, e.sensor
        copies = 1
        delivery = e.ts
        hold = False
        for a in active:
            a.seen += 1
            kind = a.fault.type
            if kind == "malformed" and (a.seen - 1) % a.fault.every == 0:
                variants = a.fault.variants
                variant = variants[((a.seen - 1) // a.fault.every) % len(variants)]
                payload, malformed = malformed_payload(msg, variant), True
                shown = ghost_sensor(e.sensor) if variant == "unknown_sensor" else e.sensor
                tags.append("malformed")
            elif kind == "duplicate" and (a.seen - 1) % a.fault.every == 0:
                copies = 2
                tags.append("duplicate")
            elif kind == "late":
                delivery = e.ts + a.fault.delay_s
                tags.append("late")
            elif kind == "out_of_order":
                hold = True
                tags.append("out_of_order")
        sensor = self.site.sensors[e.sensor]
        zone = self.site.zones[sensor.zone]
        topic = f"dt/crowdflow/{zone.grid}/{zone.id}/{shown}/{e.kind}"
        out = [
            SimMessage(
                sim_ts=delivery,
                event_ts=e.ts,
                topic=topic,
                payload=payload,
                kind=e.kind,
                sensor=e.sensor,
                malformed=malformed,
                faults=tuple(tags),
            )
            for _ in range(copies)
        ]
        if hold and not st.held:
            st.held = out  # goes out right after the sensor's next message
            return []
        return self._release(st, out)

    def _release(self, st: _SensorState, out: list[SimMessage]) -> list[SimMessage]:
        if not st.held or not out:
            return out
        held, st.held = st.held, []
        after = out[-1].sim_ts
        return out + [msgspec.structs.replace(m, sim_ts=max(m.sim_ts, after)) for m in held]

    def flush(self) -> list[SimMessage]:
        """Messages still held at the end of a run."""
        rest: list[SimMessage] = []
        for st in self.state.values():
            rest += st.held
            st.held = []
        return rest
