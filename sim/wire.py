"""Messages as the simulator sends them: topic, payload and what it is (for the tests and ground truth)."""

from __future__ import annotations

import msgspec

from domain.messages import Message, encode
from sim.scenario import MalformedVariant


class SimMessage(msgspec.Struct, frozen=True, kw_only=True):
    sim_ts: float  # when it is delivered (published), simulated epoch seconds
    event_ts: float  # when the reading was made (the payload ts, before any clock skew)
    topic: str
    payload: bytes
    kind: str  # count, total, occupancy, density or status
    sensor: str  # the real sensor that sent it (a malformed payload may name another)
    malformed: bool = False
    faults: tuple[str, ...] = ()  # fault types that shaped this message


def malformed_payload(msg: Message, variant: MalformedVariant) -> bytes:
    """A broken version of a valid message: each variant is something ingest must reject with a reason."""
    good = encode(msg)
    if variant == "invalid_json":
        return good[: max(1, len(good) // 2)]  # cut mid-way, as a truncated packet
    data = msgspec.json.decode(good)
    assert isinstance(data, dict)
    if variant == "wrong_type":
        # The value field becomes a non-numeric string (numeric strings are legitimate on the wire).
        for key in ("in", "in_total", "count", "density", "state"):
            if key in data:
                data[key] = "n/a" if key != "state" else 3
                break
    elif variant == "missing_field":
        data.pop("ts", None)
    else:  # unknown_sensor
        data["sensor"] = ghost_sensor(str(data["sensor"]))
    return msgspec.json.encode(data)


def ghost_sensor(sensor: str) -> str:
    return f"{sensor}-ghost"
