"""Web Push channel against a local receiver standing in for a browser vendor's push service.

Real keys: a VAPID key pair for the service, a P-256 key pair and auth secret for the "browser". The receiver's
request is checked as a push service and a browser would: VAPID JWT signature and claims, TTL, aes128gcm body
that decrypts with the browser's keys to the notification.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from alerts.model import DeliveryAttempt, Notification, Recipient
from alerts.notify import DeliveryError, Dispatcher
from alerts.notify.webpush import WebPushChannel
from domain.levels import Level
from tests.alerts.receiver import Receiver
from tests.push_browser import PushBrowser, point, raw_private, unb64url

SUBJECT = "mailto:duty-office@example.cn"
OFFICER = Recipient(person="p1", name="Li Na", role="officer", channels=("webpush:phone-1",))


def note(kind: str = "raised", level: Level = Level.I) -> Notification:
    return Notification(
        id="n1", key="a1", alert_ids=("a1",), zones=("S03",), kind=kind, level=level, step=0,  # type: ignore[arg-type]
        title="I red · Riverside S03", body="S03 at 95% of capacity. 外滩: 单向通行.", reason="new alert",
        created_at=0.0, recipients=(OFFICER,), url="https://duty.example.cn/ack/a1",
    )  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def vapid() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def browser(receiver: Receiver) -> PushBrowser:
    return PushBrowser(f"http://127.0.0.1:{receiver.port}/push/v2/abc123")


def make_channel(vapid: ec.EllipticCurvePrivateKey, subs: dict[str, Any], **kw: Any) -> WebPushChannel:
    return WebPushChannel(subs, vapid_private_key=raw_private(vapid), vapid_subject=SUBJECT, timeout_s=5.0, **kw)


async def test_push_arrives_encrypted_and_signed(
    receiver: Receiver, browser: PushBrowser, vapid: ec.EllipticCurvePrivateKey
) -> None:
    ch = make_channel(vapid, {"phone-1": browser.subscription}, ttl_s=900)
    try:
        await ch.send("webpush:phone-1", note(), OFFICER)
    finally:
        ch.close()
    [req] = receiver.hits("/push/v2/abc123")
    h = req.headers
    assert (h["ttl"], h["content-encoding"], h["urgency"]) == ("900", "aes128gcm", "high")
    assert len(h["topic"]) == 32

    # Authorization: vapid t=<ES256 JWT>,k=<the service's public key>, as RFC 8292 has it.
    scheme, _, params = h["authorization"].partition(" ")
    fields = dict(p.split("=", 1) for p in params.split(","))
    assert scheme == "vapid" and unb64url(fields["k"]) == point(vapid)
    head, claims, sig = fields["t"].split(".")
    raw_sig = unb64url(sig)
    signature = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
    vapid.public_key().verify(signature, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    doc = json.loads(unb64url(claims))
    assert doc["aud"] == f"http://127.0.0.1:{receiver.port}" and doc["sub"] == SUBJECT

    assert b"Riverside" not in req.body  # encrypted on the wire
    payload = browser.decrypt(req.body)
    assert (payload["title"], payload["body"]) == ("I red · Riverside S03", "S03 at 95% of capacity. 外滩: 单向通行.")
    assert (payload["url"], payload["level"], payload["kind"]) == ("https://duty.example.cn/ack/a1", 4, "raised")


@pytest.mark.parametrize(("status", "retryable"), [(503, True), (500, True), (429, True), (400, False), (413, False)])
async def test_push_service_status_decides_retryable(
    receiver: Receiver, browser: PushBrowser, vapid: ec.EllipticCurvePrivateKey, status: int, retryable: bool
) -> None:
    receiver.script("/push/v2/abc123", status)
    ch = make_channel(vapid, {"phone-1": browser.subscription})
    try:
        with pytest.raises(DeliveryError) as e:
            await ch.send("webpush:phone-1", note(), OFFICER)
    finally:
        ch.close()
    assert e.value.retryable is retryable and f"HTTP {status}" in e.value.message
    assert e.value.retry_after_s == (7.0 if status in (429, 503) else None)  # the receiver's Retry-After


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_subscription_is_permanent_and_reported(
    receiver: Receiver, browser: PushBrowser, vapid: ec.EllipticCurvePrivateKey, status: int
) -> None:
    receiver.script("/push/v2/abc123", status)
    gone: list[str] = []
    ch = make_channel(vapid, {"phone-1": browser.subscription}, on_gone=gone.append)
    try:
        with pytest.raises(DeliveryError) as e:
            await ch.send("webpush:phone-1", note(), OFFICER)
    finally:
        ch.close()
    assert not e.value.retryable and "gone" in e.value.message and gone == ["phone-1"]
    assert "abc123" not in e.value.message


async def test_through_the_dispatcher_a_gone_subscription_is_tried_once(
    receiver: Receiver, browser: PushBrowser, vapid: ec.EllipticCurvePrivateKey
) -> None:
    receiver.script("/push/v2/abc123", 410)
    attempts: list[DeliveryAttempt] = []
    delays: list[float] = []

    async def no_wait(s: float) -> None:
        delays.append(s)

    ch = make_channel(vapid, {"phone-1": browser.subscription})
    try:
        d = Dispatcher([ch], record=attempts.append, now=lambda: 5.0, sleep=no_wait)
        d.submit(note())
        assert await d.drain(10.0) == 0
    finally:
        ch.close()
    [a] = attempts
    assert (a.channel, a.attempt, a.ok, a.retryable, a.at) == ("webpush", 1, False, False, 5.0)
    assert delays == [] and len(receiver.requests) == 1


async def test_unknown_or_broken_subscription_is_permanent(vapid: ec.EllipticCurvePrivateKey) -> None:
    ch = make_channel(vapid, {"bad": {"endpoint": "ftp://x", "keys": {}}})
    try:
        for url, words in (("webpush:nobody", "no stored Web Push subscription"), ("webpush:bad", "endpoint")):
            with pytest.raises(DeliveryError) as e:
                await ch.send(url, note(), OFFICER)
            assert not e.value.retryable and words in e.value.message
    finally:
        ch.close()


async def test_low_level_is_normal_urgency(
    receiver: Receiver, browser: PushBrowser, vapid: ec.EllipticCurvePrivateKey
) -> None:
    ch = make_channel(vapid, {"phone-1": browser.subscription})
    try:
        await ch.send("webpush:phone-1", note(level=Level.III), OFFICER)
    finally:
        ch.close()
    assert receiver.requests[0].headers["urgency"] == "normal"


def test_key_formats_and_bad_settings(vapid: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    pem = vapid.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "vapid.pem").write_bytes(pem)
    for key in (raw_private(vapid), pem.decode(), str(tmp_path / "vapid.pem")):
        ch = WebPushChannel({}, vapid_private_key=key, vapid_subject=SUBJECT)
        assert ch.handles("webpush:x") and not ch.handles("ntfy://h/t")
        ch.close()
    with pytest.raises(ValueError, match="vapid_private_key: could not read"):
        WebPushChannel({}, vapid_private_key="not-a-key", vapid_subject=SUBJECT)
    with pytest.raises(ValueError, match="vapid_subject must be a 'mailto:' or 'https:'"):
        WebPushChannel({}, vapid_private_key=raw_private(vapid), vapid_subject="ops@example.cn")
