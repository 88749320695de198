from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.messages import CountMsg, DensityMsg, OccupancyMsg, StatusMsg, TotalMsg
from domain.site import Site
from ingest.decoder import Decoder, decode
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
    m = dec.decode(
        topic("seg1-west", "count"), payload("seg1-west", 7, T0, interval_s=30, **{"in": 5, "out": 2})
    )
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
    raw = json.dumps(
        {"sensor": "seg1-west", "ts": iso(T0), "seq": "3", "in": "12", "out": "4", "interval_s": "60"}
    )
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
