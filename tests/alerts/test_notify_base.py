"""Redaction of channel URLs, scrubbing of quoted errors, HTTP classification, and the renderers."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from alerts.model import Notification
from alerts.notify import render
from alerts.notify.apprise_channel import AppriseChannel, classify
from alerts.notify.base import Channel, http_retryable, redact, scrub
from alerts.notify.webpush import WebPushChannel
from domain.levels import Level


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ntfy://127.0.0.1:8090/topic", "ntfy://127.0.0.1:8090"),
        ("ntfys://user:pa55word@ntfy.example.cn/alerts?auth=token", "ntfys://ntfy.example.cn"),
        ("ntfy://secret-topic-name", "ntfy://***"),
        ("json://127.0.0.1:9000/hook?token=abc", "json://127.0.0.1:9000"),
        ("jsons://user:pw@hooks.example.cn/x", "jsons://hooks.example.cn"),
        ("gotify://gotify.example.cn/AbCdEf123", "gotify://gotify.example.cn"),
        ("mailto://duty:mailpass@example.cn?to=ops@example.cn", "mailto://example.cn"),
        ("dingtalk://9f8e7d6c5b4a3210/", "dingtalk://***"),
        ("dingtalk://9f8e7d6c5b4a3210/SECabc/13800000000", "dingtalk://***"),
        ("wecombot://0a1b2c3d-4e5f", "wecombot://***"),
        ("feishu://f1e2d3c4b5a6", "feishu://***"),
        ("json://[::1]:8080/hook", "json://[::1]:8080"),
        ("json://host:notaport/hook", "json://***"),
        ("webpush:phone-1", "webpush"),
        ("not a url", "(invalid url)"),
        ("", "(invalid url)"),
    ],
)
def test_redact_shows_scheme_and_host_only(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "ntfys://user:pa55word@ntfy.example.cn/alerts?auth=tk_0123456789",
        "dingtalk://9f8e7d6c5b4a3210/SECabcdef/13800000000",
        "gotify://gotify.example.cn/AbCdEf123",
        "mailto://duty:mailpass@example.cn",
    ],
)
def test_no_secret_survives_redact_or_scrub(url: str) -> None:
    secrets = ["pa55word", "tk_0123456789", "9f8e7d6c5b4a3210", "SECabcdef", "AbCdEf123", "mailpass", "user:"]
    quoted = f"error sending to {url}: rejected token {url.split('/')[-1]} (user {url})"
    for text in (redact(url), scrub(quoted, url)):
        assert not [s for s in secrets if s in text], text


def test_http_classification() -> None:
    assert [s for s in range(300, 600) if http_retryable(s)] == [408, 425, 429, *range(500, 600)]


def test_classify_a_success() -> None:
    import apprise

    ok = apprise.AppriseResult(apprise.AppriseResultStatus.SUCCESS)
    assert classify(ok, "json://h/p") is None


def test_channels_satisfy_the_protocol() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
    raw = base64.urlsafe_b64encode(key).rstrip(b"=").decode()
    for ch in (AppriseChannel(), WebPushChannel({}, vapid_private_key=raw, vapid_subject="mailto:a@example.cn")):
        try:
            assert isinstance(ch, Channel)
        finally:
            ch.close()


def note(body: str, url: str = "") -> Notification:
    return Notification(
        id="n1", key="a1", alert_ids=("a1", "a2"), zones=("S03", "S04"), kind="level_up", level=Level.II, step=1,
        title="II orange · Riverside S03 (+S04)", body=body, reason="level up", created_at=0.0, recipients=(),
        url=url,
    )  # fmt: skip


def test_text_and_markdown_keep_title_and_body_as_written() -> None:
    n = note("S03 at 81%.\nOne-way flow at Chenyi Square.", "https://duty.example.cn/ack/a1")
    assert (
        render.text(n) == "S03 at 81%.\nOne-way flow at Chenyi Square.\n\nAcknowledge: https://duty.example.cn/ack/a1"
    )
    assert render.markdown(n).endswith("[Acknowledge](https://duty.example.cn/ack/a1)")
    assert render.text(note("just this")) == "just this" == render.markdown(note("just this"))


def test_push_payload_fits_the_push_limit() -> None:
    long_body = "外滩观景平台人流密度过高，请立即单向通行。" * 400  # about 24 KB of UTF-8
    raw = render.push_payload(note(long_body))
    doc = json.loads(raw)
    assert len(raw) <= render.PUSH_PAYLOAD_MAX_BYTES and len(raw) > render.PUSH_PAYLOAD_MAX_BYTES - 200
    assert doc["body"].endswith("…") and long_body.startswith(doc["body"][:-1])
    assert (doc["title"], doc["zones"], doc["level"]) == ("II orange · Riverside S03 (+S04)", ["S03", "S04"], 3)
    short = json.loads(render.push_payload(note("short")))
    assert short["body"] == "short"
