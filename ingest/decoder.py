"""Decode and validate one MQTT message against the wire contract v1 and the site (docs/messages.md).

Pure and stateless per message: no clock, no history. Everything that needs history (time range, duplicates,
ordering, counter resets) is in `ingest.pipeline`. The per-sensor lookups and the msgspec decoders are built
once per site, so the per-message work is a topic split, one msgspec decode and a few dict look-ups.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import tzinfo
from zoneinfo import ZoneInfo

import msgspec

from domain.messages import (
    KINDS,
    MESSAGE_TYPES,
    TOPIC_PREFIX,
    VERSION,
    CountMsg,
    DensityMsg,
    Message,
    OccupancyMsg,
    TotalMsg,
)
from domain.site import Site
from ingest.rejection import Rejection, reject

MAX_PAYLOAD_BYTES = 4096
# A v1 payload is one flat object (depth 1). Deeper nesting is only ever garbage, and an untyped decode of
# thousands of nested brackets raises RecursionError: the error paths check this bound first.
MAX_JSON_DEPTH = 16
# Integers above this lose precision as floats and overflow the int64 of numpy and InfluxDB downstream.
MAX_INT = 2**53 - 1

# Which message kinds each sensor kind may send.
ALLOWED_KINDS: dict[str, frozenset[str]] = {
    "counter": frozenset({"count", "total", "status"}),
    "area": frozenset({"occupancy", "status"}),
    "density": frozenset({"density", "status"}),
}

_PREFIX = TOPIC_PREFIX + "/"
# MQTT wildcards and control characters have no place in a topic a sensor publishes on.
_BAD_TOPIC_CHARS = re.compile(r"[\x00-\x1f\x7f+#]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SHOWN_CHARS = 120  # a topic or an id in a detail: enough to recognise it


class Decoder:
    """Decoder for one site. Build once; `decode` is called per message."""

    __slots__ = ("_decoders", "_ids", "_index", "_routes", "max_bytes", "site", "tz")

    def __init__(self, site: Site, tz: tzinfo | None = None, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self.site = site
        self.tz: tzinfo = tz if tz is not None else ZoneInfo(site.info.timezone)
        self.max_bytes = max_bytes
        # strict=False: numbers sent as strings ("12") are accepted, as some counters do.
        self._decoders = {kind: msgspec.json.Decoder(typ, strict=False) for kind, typ in MESSAGE_TYPES.items()}
        # Per sensor, at its site index: (grid, zone, kinds it may send), one tuple shared by every sensor of a
        # zone and kind, and its id as the site holds it. A decoded message's sensor is replaced by that id, so
        # whatever keeps it (a key, a model's memory) keeps the site's string, not a copy per message.
        self._index = site.index
        self._ids: list[str] = list(site.sensors)
        shared: dict[tuple[str, str], tuple[str, str, frozenset[str]]] = {}
        self._routes: list[tuple[str, str, frozenset[str]]] = []
        for s in site.sensors.values():
            route = shared.get((s.zone, s.kind))
            if route is None:
                zone = site.zones[s.zone]
                route = shared[(s.zone, s.kind)] = (zone.grid, zone.id, ALLOWED_KINDS[s.kind])
            self._routes.append(route)

    def decode(self, topic: str, payload: bytes, received_at: float = 0.0) -> Message | Rejection:
        if len(payload) > self.max_bytes:
            return reject(
                "oversized",
                f"payload is {len(payload)} bytes, the limit is {self.max_bytes}; send one reading per message",
                topic,
                payload,
                received_at=received_at,
            )
        parts = topic.split("/")
        if (
            len(parts) != 6
            or not topic.startswith(_PREFIX)
            or not all(parts[2:])
            or _BAD_TOPIC_CHARS.search(topic) is not None
            or parts[5] not in KINDS
        ):
            return reject("bad_topic", _topic_problem(topic), topic, payload, received_at=received_at)
        _, _, grid, zone, topic_sensor, kind = parts
        known = topic_sensor if topic_sensor in self._index else None
        try:
            msg: Message = self._decoders[kind].decode(payload)
        except msgspec.ValidationError as e:
            too_deep = self._too_deep(topic, payload, known, received_at)
            if too_deep is not None:
                return too_deep
            if not _well_formed(payload):  # msgspec stops at the first type error, before reading it all
                return self._malformed(topic, payload, known, received_at)
            return reject(
                "schema",
                f"{kind} payload does not match contract v{VERSION}: {_printable(str(e))}; "
                "see docs/messages.md for the fields",
                topic,
                payload,
                known,
                received_at,
            )
        except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter for bad UTF-8 in a key
            too_deep = self._too_deep(topic, payload, known, received_at)
            if too_deep is not None:
                return too_deep
            return self._malformed(topic, payload, known, received_at)
        sensor = msg.sensor
        problem = _value_problem(msg)
        if problem is not None:
            return reject("schema", problem, topic, payload, sensor, received_at)
        at = self._index.get(sensor)
        if at is None:
            return reject(
                "unknown_sensor",
                f"sensor '{_shown(sensor)}' is not in site '{self.site.info.id}'; "
                "add it to the site file or fix the id",
                topic,
                payload,
                sensor,
                received_at,
            )
        s_grid, s_zone, allowed = self._routes[at]
        if topic_sensor != sensor or zone != s_zone or grid != s_grid:
            return reject(
                "topic_mismatch",
                f"topic says {_shown(f'{grid}/{zone}/{topic_sensor}')} but payload sensor '{sensor}' belongs to "
                f"{s_grid}/{s_zone}; publish on {TOPIC_PREFIX}/{s_grid}/{s_zone}/{sensor}/{kind}",
                topic,
                payload,
                sensor,
                received_at,
            )
        if kind not in allowed:
            skind = self.site.sensors[sensor].kind
            return reject(
                "wrong_kind",
                f"a {skind} sensor cannot send '{kind}' messages (it may send {', '.join(sorted(allowed))}); "
                "fix the topic's kind or the sensor's kind in the site file",
                topic,
                payload,
                sensor,
                received_at,
            )
        if msg.ts.tzinfo is None:
            # A naive local time is read in the site's timezone (contract v1).
            msg.ts = msg.ts.replace(tzinfo=self.tz)
        msg.sensor = self._ids[at]
        return msg

    def _too_deep(self, topic: str, payload: bytes, sensor: str | None, received_at: float) -> Rejection | None:
        # Error paths only: a valid message never nests, so the hot path pays nothing for this bound.
        if payload.count(b"[") + payload.count(b"{") <= MAX_JSON_DEPTH:
            return None
        depth = json_depth(payload)
        if depth <= MAX_JSON_DEPTH:
            return None
        return reject(
            "oversized",
            f"payload nests arrays or objects {depth} levels deep, the limit is {MAX_JSON_DEPTH}; "
            "send one flat JSON object per message",
            topic,
            payload,
            sensor,
            received_at,
        )

    def _malformed(self, topic: str, payload: bytes, sensor: str | None, received_at: float) -> Rejection:
        why = "unreadable"
        try:  # error path only: decode untyped to say where the JSON breaks
            msgspec.json.decode(payload)
        except msgspec.DecodeError as e:
            why = _printable(str(e))
        except UnicodeDecodeError as e:
            why = f"invalid UTF-8 at byte {e.start}"
        return reject(
            "malformed_json",
            f"payload is not valid UTF-8 JSON ({why}); send one JSON object per message",
            topic,
            payload,
            sensor,
            received_at,
        )


def json_depth(payload: bytes) -> int:
    """How deep arrays and objects nest in `payload`, brackets inside strings not counted.

    Works on any bytes: with an unterminated string, the brackets after its quote count, which can only
    overstate the depth of a payload that is malformed anyway.

    >>> json_depth(b'{"a": [[1], {"b": "[[[["}]}')
    3
    """
    depth = deepest = 0
    for c in _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS):
        if c in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _shown(text: str) -> str:
    """Untrusted text for a rejection's detail: control characters escaped (one log line), length capped."""
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return _printable(text)


def _printable(text: str) -> str:
    """Text with control characters escaped: msgspec's errors quote field names from the payload as sent."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _well_formed(payload: bytes) -> bool:
    try:
        msgspec.json.decode(payload)
    except msgspec.ValidationError:  # syntactically JSON, a value out of range (1e999)
        return True
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    return True


def _value_problem(msg: Message) -> str | None:
    """Range checks msgspec's types cannot express. None when the values are sane."""
    if msg.v != VERSION:
        return f"contract version {msg.v} is not supported (this service reads v{VERSION}); send v={VERSION}"
    if not 0 <= msg.seq <= MAX_INT:
        return f"seq must be within 0..{MAX_INT}, got {msg.seq}"
    if isinstance(msg, CountMsg):
        if msg.in_ < 0 or msg.out < 0:
            return f"counts cannot be negative (in={msg.in_}, out={msg.out})"
        if msg.in_ > MAX_INT or msg.out > MAX_INT:
            return f"counts must be at most {MAX_INT} (in={msg.in_}, out={msg.out})"
        if not (math.isfinite(msg.interval_s) and msg.interval_s > 0):
            return f"interval_s must be a positive number of seconds, got {msg.interval_s}"
    elif isinstance(msg, TotalMsg):
        if msg.in_total < 0 or msg.out_total < 0:
            return f"totals cannot be negative (in_total={msg.in_total}, out_total={msg.out_total})"
        if msg.in_total > MAX_INT or msg.out_total > MAX_INT:
            return f"totals must be at most {MAX_INT} (in_total={msg.in_total}, out_total={msg.out_total})"
    elif isinstance(msg, OccupancyMsg):
        if not 0 <= msg.count <= MAX_INT:
            return f"count must be within 0..{MAX_INT}, got {msg.count}"
    elif isinstance(msg, DensityMsg) and not (math.isfinite(msg.density) and msg.density >= 0):
        return f"density must be a finite number of people/m² >= 0, got {msg.density}"
    return None


def _topic_problem(topic: str) -> str:
    shown = _shown(topic)
    if _BAD_TOPIC_CHARS.search(topic):
        return f"topic '{shown}' contains a wildcard (+ #) or a control character; publish on a concrete topic"
    parts = topic.split("/")
    if len(parts) == 6 and topic.startswith(_PREFIX) and all(parts[2:]) and parts[5] not in KINDS:
        return f"topic kind '{_shown(parts[5])}' is not one of {', '.join(KINDS)}"
    return f"topic '{shown}' is not {TOPIC_PREFIX}/<grid>/<zone>/<sensor>/<kind> (lowercase, no leading slash)"


@functools.lru_cache(maxsize=8)
def _decoder_for(site: Site, tz: tzinfo | None) -> Decoder:
    return Decoder(site, tz)


def decode(topic: str, payload: bytes, site: Site, tz: tzinfo | None = None) -> Message | Rejection:
    """Decode one message; the Decoder for (site, tz) is built on first use and cached.

    A Rejection from here has received_at 0.0; use `Decoder.decode` to stamp it.
    """
    return _decoder_for(site, tz).decode(topic, payload)
