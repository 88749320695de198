from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.messages import CountMsg, DensityMsg, OccupancyMsg, StatusMsg, TotalMsg
from domain.site import Site
from ingest.decoder import MAX_INT, MAX_JSON_DEPTH, Decoder, decode, json_depth
from ingest.rejection import REASONS, Rejection
from tests.ingest.helpers import SHANGHAI, T0, iso, payload, site_with_area, topic


@pytest.fixture(scope="module")
def site() -> Site:
    return site_with_area()


@pytest.fixture(scope="module")
def dec(site: Site) -> Decoder:
    return Decoder(site)


def rejected(result: object, reason: str) -> Rejection:
    assert isinstance(result, Rejection), f"expected a {reason} rejection, got {result!r}"
    assert result.reason == reason, result
    assert result.detail and result.detail[0].islower()
    return result


def test_count(dec: Decoder) -> None:
    m = dec.decode(topic("seg1-west", "count"), payload("seg1-west", 7, T0, interval_s=30, **{"in": 5, "out": 2}))
    assert isinstance(m, CountMsg)
    assert (m.sensor, m.seq, m.in_, m.out, m.interval_s) == ("seg1-west", 7, 5, 2, 30.0)
    assert m.ts.timestamp() == T0


def test_total(dec: Decoder) -> None:
    m = dec.decode(topic("seg1-east", "total"), payload("seg1-east", 1, T0, in_total=100, out_total=40))
    assert isinstance(m, TotalMsg) and (m.in_total, m.out_total) == (100, 40)


def test_occupancy(dec: Decoder) -> None:
    m = dec.decode(topic("plaza-area", "occupancy"), payload("plaza-area", 1, T0, count=321))
    assert isinstance(m, OccupancyMsg) and m.count == 321


def test_density(dec: Decoder) -> None:
    m = dec.decode(topic("plaza-cam", "density"), payload("plaza-cam", 1, T0, density=2.5))
    assert isinstance(m, DensityMsg) and m.density == 2.5


def test_status_from_any_sensor_kind(dec: Decoder) -> None:
    for s in ("seg1-west", "plaza-cam", "plaza-area"):
        m = dec.decode(topic(s, "status"), payload(s, 1, T0, state="fault", detail="lens covered"))
        assert isinstance(m, StatusMsg) and (m.state, m.detail) == ("fault", "lens covered")


def test_numbers_as_strings(dec: Decoder) -> None:
    raw = json.dumps({"sensor": "seg1-west", "ts": iso(T0), "seq": "3", "in": "12", "out": "4", "interval_s": "60"})
    m = dec.decode(topic("seg1-west", "count"), raw.encode())
    assert isinstance(m, CountMsg) and (m.seq, m.in_, m.out, m.interval_s) == (3, 12, 4, 60.0)
    m2 = dec.decode(topic("plaza-cam", "density"), payload("plaza-cam", 1, T0, density="1.75"))
    assert isinstance(m2, DensityMsg) and m2.density == 1.75


def test_naive_local_time_is_read_in_site_timezone(dec: Decoder) -> None:
    raw = b'{"sensor":"seg1-west","ts":"2026-05-01T12:00:00","seq":1,"in":1,"out":0}'
    m = dec.decode(topic("seg1-west", "count"), raw)
    assert isinstance(m, CountMsg)
    assert m.ts.timestamp() == datetime(2026, 5, 1, 12, tzinfo=SHANGHAI).timestamp() == T0
    # With an explicit offset or as epoch seconds, the site timezone does not matter.
    utc = b'{"sensor":"seg1-west","ts":"2026-05-01T04:00:00Z","seq":1,"in":1,"out":0}'
    epoch = f'{{"sensor":"seg1-west","ts":{T0},"seq":1,"in":1,"out":0}}'.encode()
    for raw2 in (utc, epoch):
        m2 = dec.decode(topic("seg1-west", "count"), raw2)
        assert isinstance(m2, CountMsg) and m2.ts.timestamp() == T0


def test_module_level_decode_with_explicit_tz(site: Site) -> None:
    raw = b'{"sensor":"seg1-west","ts":"2026-05-01T04:00:00","seq":1,"in":1,"out":0}'
    m = decode(topic("seg1-west", "count"), raw, site, UTC)
    assert isinstance(m, CountMsg) and m.ts.timestamp() == T0


@pytest.mark.parametrize(
    "raw",
    [b"{bad json", b"", b"\xff\xfe\x00", b'{"sensor": "seg1-west", "ts": NaN}', b"[1, 2"],
)
def test_malformed_json(dec: Decoder, raw: bytes) -> None:
    r = rejected(dec.decode(topic("seg1-west", "count"), raw, received_at=5.0), "malformed_json")
    assert r.received_at == 5.0 and r.topic == topic("seg1-west", "count")


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"in": "many", "out": 1}, "$.in"),  # wrong type
        ({"in": 1.5, "out": 1}, "$.in"),  # not an integer
        ({"in": 1}, "out"),  # missing field
        ({"in": 1, "out": 1, "colour": "red"}, "colour"),  # unknown field
        ({"in": -1, "out": 1}, "negative"),
        ({"in": 1, "out": 1, "interval_s": 0}, "interval_s"),
    ],
)
def test_schema_count(dec: Decoder, fields: dict[str, object], needle: str) -> None:
    r = rejected(dec.decode(topic("seg1-west", "count"), payload("seg1-west", 1, T0, **fields)), "schema")
    assert needle in r.detail


@pytest.mark.parametrize("density", ['"NaN"', '"inf"', '"-Infinity"', "1e999", "-0.5"])
def test_schema_density_not_finite_or_negative(dec: Decoder, density: str) -> None:
    raw = f'{{"sensor":"plaza-cam","ts":"{iso(T0)}","seq":1,"density":{density}}}'.encode()
    rejected(dec.decode(topic("plaza-cam", "density"), raw), "schema")


def test_schema_other_checks(dec: Decoder) -> None:
    t = topic("seg1-east", "total")
    rejected(dec.decode(t, payload("seg1-east", 1, T0, in_total=-5, out_total=0)), "schema")
    rejected(dec.decode(topic("plaza-area", "occupancy"), payload("plaza-area", 1, T0, count=-1)), "schema")
    rejected(dec.decode(topic("seg1-west", "status"), payload("seg1-west", 1, T0, state="asleep")), "schema")
    r = rejected(dec.decode(t, payload("seg1-east", -2, T0, in_total=1, out_total=0)), "schema")
    assert "seq" in r.detail
    v2 = json.dumps({"v": 2, "sensor": "seg1-east", "ts": iso(T0), "seq": 1, "in_total": 1, "out_total": 0})
    assert "version 2" in rejected(dec.decode(t, v2.encode()), "schema").detail
    rejected(dec.decode(t, b"[1, 2, 3]"), "schema")  # JSON, but not an object


def test_unknown_sensor(dec: Decoder) -> None:
    t = "dt/crowdflow/riverside/seg-1/ghost/count"
    raw = payload("ghost", 1, T0, **{"in": 1, "out": 0})
    r = rejected(dec.decode(t, raw), "unknown_sensor")
    assert r.sensor == "ghost" and "site file" in r.detail


@pytest.mark.parametrize(
    "t",
    [
        "dt/crowdflow/riverside/seg-1/seg2-gate/count",  # topic names another sensor
        "dt/crowdflow/riverside/seg-2/seg1-west/count",  # wrong zone for the sensor
        "dt/crowdflow/laoshan/seg-1/seg1-west/count",  # wrong grid
    ],
)
def test_topic_mismatch(dec: Decoder, t: str) -> None:
    r = rejected(dec.decode(t, payload("seg1-west", 1, T0, **{"in": 1, "out": 0})), "topic_mismatch")
    assert "dt/crowdflow/riverside/seg-1/seg1-west/count" in r.detail  # says where to publish


@pytest.mark.parametrize(
    ("sensor", "kind", "fields"),
    [
        ("plaza-cam", "count", {"in": 1, "out": 0}),
        ("seg1-west", "density", {"density": 1.0}),
        ("seg1-west", "occupancy", {"count": 3}),
        ("plaza-area", "total", {"in_total": 1, "out_total": 0}),
    ],
)
def test_wrong_kind(dec: Decoder, sensor: str, kind: str, fields: dict[str, object]) -> None:
    rejected(dec.decode(topic(sensor, kind), payload(sensor, 1, T0, **fields)), "wrong_kind")


def test_oversized(site: Site) -> None:
    big = payload("seg1-west", 1, T0, **{"in": 1, "out": 0, "pad": "x" * 5000})
    r = rejected(Decoder(site).decode(topic("seg1-west", "count"), big), "oversized")
    assert len(r.payload) == 256  # only an excerpt is kept
    small = Decoder(site, max_bytes=16)
    rejected(
        small.decode(topic("seg1-west", "count"), payload("seg1-west", 1, T0, **{"in": 1, "out": 0})),
        "oversized",
    )


@pytest.mark.parametrize(
    "t",
    [
        "dt/crowdflow/riverside/seg-1/+/count",
        "dt/crowdflow/riverside/seg-1/seg1-west/#",
        "dt/crowdflow/#",
        "/dt/crowdflow/riverside/seg-1/seg1-west/count",
        "dt/crowdflow/riverside/seg-1/seg1-west/count/extra",
        "dt/crowdflow/riverside/seg-1/seg1-west",
        "dt/crowdflow/riverside//seg1-west/count",
        "dt/crowdflow/riverside/seg-1/seg1-west/flow",  # kind not in KINDS
        "dt/crowdflow/riverside/seg-1/seg1\x00west/count",
        "xx/crowdflow/riverside/seg-1/seg1-west/count",
    ],
)
def test_bad_topic(dec: Decoder, t: str) -> None:
    r = rejected(dec.decode(t, payload("seg1-west", 1, T0, **{"in": 1, "out": 0})), "bad_topic")
    assert "\x00" not in r.detail  # control characters are escaped in the message for the operator


def test_rejection_payload_excerpt_is_text_even_for_binary(dec: Decoder) -> None:
    r = rejected(dec.decode(topic("seg1-west", "count"), b"\xff" * 300), "malformed_json")
    assert isinstance(r.payload, str) and len(r.payload) == 256 and "\ufffd" in r.payload


def test_every_decoder_reason_is_known() -> None:
    for reason in ("oversized", "bad_topic", "malformed_json", "schema", "unknown_sensor", "topic_mismatch"):
        assert reason in REASONS


# --- found by fuzzing (scripts/fuzz.py): each with the exact input that failed -------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 2000,  # RecursionError from msgspec's untyped decode on the error path
        b"[" * 2000 + b"]" * 2000,
        b'{"sensor":' + b"[" * 2000,
        b'{"sensor":"seg1-west","ts":"2026-05-01T12:00:00","seq":1,"in":1,"out":0,"x":'
        + b"[" * 1900
        + b"]" * 1900
        + b"}",
    ],
)
def test_deep_json_is_rejected_as_oversized_not_a_recursion_error(dec: Decoder, raw: bytes) -> None:
    r = rejected(dec.decode(topic("seg1-west", "count"), raw), "oversized")
    assert "levels deep" in r.detail and f"limit is {MAX_JSON_DEPTH}" in r.detail


def test_depth_bound_is_exact_and_brackets_in_strings_do_not_count(dec: Decoder) -> None:
    def body(depth: int) -> bytes:
        return payload("seg1-west", 1, T0, **{"in": 1, "out": 0, "x": nested(depth - 1)})

    assert json_depth(body(MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    rejected(dec.decode(topic("seg1-west", "count"), body(MAX_JSON_DEPTH)), "schema")  # unknown field x
    rejected(dec.decode(topic("seg1-west", "count"), body(MAX_JSON_DEPTH + 1)), "oversized")
    brackets = payload("seg1-west", 1, T0, state="fault", detail="[{" * 100)
    assert isinstance(dec.decode(topic("seg1-west", "status"), brackets), StatusMsg)


def nested(depth: int) -> object:
    out: object = 1
    for _ in range(depth):
        out = [out]
    return out


def test_invalid_utf8_inside_a_key_is_malformed_json_not_a_unicode_error(dec: Decoder) -> None:
    raw = (
        b'{"v": 1, "sensor\xda\xa6\x86\x87"plaza-cam", "ts": "2026-05-01T12:00:00+08:00", "seq": 1, "state": '
        b'"online", "detail": "ok", "\\ud81e\\udd83\\u00b4D": [[[[[[[[[1]]]]]]]]]}'
    )
    r = rejected(dec.decode("dt/crowdflow/occupancy/seg-2/seg2-gate/count", raw), "malformed_json")
    assert "UTF-8" in r.detail
    raw2 = b'{"sensor": "seg1-west", "\xff": 1}'
    rejected(dec.decode(topic("seg1-west", "count"), raw2), "malformed_json")


def test_control_characters_from_the_payload_are_escaped_in_the_detail(dec: Decoder) -> None:
    # msgspec quotes an unknown field's name as sent: the detail went into logs with a raw \x0e (and \n).
    raw = (
        b'{"v": 1, "sensor": "seg2-gate", "ts": "2026-05-01T12:00:00+08:00", "seq": 1, "in": 3, "out": 1, '
        b'"interval_s": 60, "\\u00d23\\u00e4\\u00f4\\u0091\\u000e": -5354443}'
    )
    r = rejected(dec.decode("dt/crowdflow/riverside/laoshan/seg2-gate/count", raw), "schema")
    assert r.detail.isprintable() and "\\x0e" in r.detail
    ghost = payload("gh\nost", 1, T0, **{"in": 1, "out": 0})
    r2 = rejected(dec.decode("dt/crowdflow/riverside/seg-1/ghost/count", ghost), "unknown_sensor")
    assert r2.detail.isprintable() and "gh\\nost" in r2.detail and r2.sensor == "gh\nost"


@pytest.mark.parametrize(
    ("kind", "sensor", "fields"),
    [
        ("count", "seg1-west", {"in": MAX_INT + 1, "out": 0}),
        ("count", "seg1-west", {"in": 0, "out": 10**30}),
        ("total", "seg1-east", {"in_total": 2**64, "out_total": 0}),
        ("occupancy", "plaza-area", {"count": 2**63}),
    ],
)
def test_integers_beyond_float_precision_are_rejected(
    dec: Decoder, kind: str, sensor: str, fields: dict[str, object]
) -> None:
    # Accepted before: 10**30 people went on to detect/ and overflow numpy's and InfluxDB's int64.
    r = rejected(dec.decode(topic(sensor, kind), payload(sensor, 1, T0, **fields)), "schema")
    assert str(MAX_INT) in r.detail
    big_seq = payload(sensor, 10**23, T0, **{k: 1 for k in fields})
    assert "seq" in rejected(dec.decode(topic(sensor, kind), big_seq), "schema").detail


def test_largest_integers_are_accepted(dec: Decoder) -> None:
    m = dec.decode(topic("seg1-west", "count"), payload("seg1-west", MAX_INT, T0, **{"in": MAX_INT, "out": 0}))
    assert isinstance(m, CountMsg) and m.in_ == MAX_INT == m.seq


def test_long_topic_detail_is_capped(dec: Decoder) -> None:
    t = "dt/crowdflow/riverside/seg-1/seg1-west/count" * 300
    r = rejected(dec.decode(t, b"{}"), "bad_topic")
    assert len(r.detail) < 300 and r.topic == t
