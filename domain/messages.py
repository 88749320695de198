"""Wire contract v1: MQTT topics and JSON payloads of sensors (documented in docs/messages.md).

Topic: dt/crowdflow/<grid>/<zone>/<sensor>/<kind>, kind one of KINDS. The payload is authoritative for the
sensor id; the topic is for routing and ACLs. Shared by sim/ (encoding) and ingest/ (decoding).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

VERSION = 1
TOPIC_PREFIX = "dt/crowdflow"
SUBSCRIPTION = f"{TOPIC_PREFIX}/#"
DEADLETTER_TOPIC = "crowdflow/deadletter"
ALERT_TOPIC_PREFIX = "crowdflow/alerts"  # + /<zone>, retained: each zone's current alert state
STATE_TOPIC_PREFIX = "crowdflow/state"  # + /<zone>, zone state snapshots
# The simulator's clock: {"epoch": simulated seconds since the epoch, "speed": sim s per real s}, published
# before the messages of each simulated instant, so a service with clock = "sim" follows a replayed day.
SIM_CLOCK_TOPIC = "crowdflow/sim/clock"

Kind = Literal["count", "total", "occupancy", "density", "status"]
KINDS: tuple[str, ...] = ("count", "total", "occupancy", "density", "status")


class _Msg(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    v: int = VERSION
    sensor: str
    # RFC 3339 with offset ("2026-12-31T23:59:00+08:00"); a naive local time is read in the site's
    # timezone; a number is read as epoch seconds.
    ts: datetime
    seq: int


class CountMsg(_Msg, kw_only=True):
    """Line-crossing counter, per-interval counts: people crossing in and out during the interval ending at ts."""

    interval_s: float = 60.0
    in_: int = msgspec.field(name="in")
    out: int


class TotalMsg(_Msg, kw_only=True):
    """Line-crossing counter, running totals since its last reset (midnight or reboot)."""

    in_total: int
    out_total: int


class OccupancyMsg(_Msg, kw_only=True):
    """Area sensor or camera: people in its region now."""

    count: int


class DensityMsg(_Msg, kw_only=True):
    """Density sensor or camera: people per m² in its region now."""

    density: float


class StatusMsg(_Msg, kw_only=True):
    state: Literal["online", "offline", "fault"]
    detail: str = ""


Message = CountMsg | TotalMsg | OccupancyMsg | DensityMsg | StatusMsg

MESSAGE_TYPES: dict[str, type[Message]] = {
    "count": CountMsg,
    "total": TotalMsg,
    "occupancy": OccupancyMsg,
    "density": DensityMsg,
    "status": StatusMsg,
}


def topic(grid: str, zone: str, sensor: str, kind: str) -> str:
    return f"{TOPIC_PREFIX}/{grid}/{zone}/{sensor}/{kind}"


_encoder = msgspec.json.Encoder()


def encode(msg: Message) -> bytes:
    return _encoder.encode(msg)
