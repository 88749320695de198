"""Why a message was not used: a small frozen value, counted by reason and dead-lettered.

The reasons and what a sender should fix are listed in docs/messages.md.
"""

from __future__ import annotations

from typing import Literal, get_args

import msgspec

Reason = Literal[
    "oversized",  # payload larger than the limit, or JSON nested deeper than 16 levels
    "bad_topic",  # topic not dt/crowdflow/<grid>/<zone>/<sensor>/<kind>
    "malformed_json",  # payload is not JSON (or not UTF-8)
    "schema",  # JSON, but fields missing, unknown, of the wrong type or out of range
    "unknown_sensor",  # sensor id not in the site file
    "topic_mismatch",  # topic's grid/zone/sensor disagree with the payload or the site
    "wrong_kind",  # message kind the sensor cannot send (an area sensor sending counts)
    "timestamp_out_of_range",  # event time too old or too far in the future
    "duplicate",  # (sensor, kind, seq) already seen
    "too_late",  # arrived after its gap was closed, and its information is already superseded
    "too_frequent",  # the sensor sends far more often than its declared interval (a flood)
]
REASONS: tuple[Reason, ...] = get_args(Reason)

EXCERPT_BYTES = 256


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    reason: Reason
    detail: str  # what is wrong and what the sender should fix
    topic: str
    payload: str  # first EXCERPT_BYTES bytes, undecodable bytes replaced
    sensor: str | None = None
    received_at: float = 0.0


def excerpt(payload: bytes) -> str:
    return payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def reject(
    reason: Reason,
    detail: str,
    topic: str,
    payload: bytes,
    sensor: str | None = None,
    received_at: float = 0.0,
) -> Rejection:
    return Rejection(
        reason=reason,
        detail=detail,
        topic=topic,
        payload=excerpt(payload),
        sensor=sensor,
        received_at=received_at,
    )
