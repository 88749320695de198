"""AppriseChannel against a real local receiver: what arrives, and how each failure is classified."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from alerts.model import Notification, Recipient
from alerts.notify.apprise_channel import AppriseChannel
from alerts.notify.base import DeliveryError
from domain.levels import Level
from tests.alerts.receiver import HANG, Receiver

OFFICER = Recipient(person="p1", name="Wang Wei", role="officer", channels=())


BODY = "S03 at 92% of capacity. Hold crowds at Zhongshan Rd."


def note(title: str = "I red · Riverside S03", body: str = BODY) -> Notification:
    return Notification(
        id="n1", key="a1", alert_ids=("a1",), zones=("S03",), kind="raised", level=Level.I, step=0,
        title=title, body=body, reason="new alert", created_at=0.0, recipients=(OFFICER,),
        url="https://duty.example.cn/ack/a1",
    )  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def channel() -> Iterator[AppriseChannel]:
    ch = AppriseChannel(timeout_s=5.0)
    yield ch
    ch.close()


async def test_json_webhook_gets_title_and_body(receiver: Receiver, channel: AppriseChannel) -> None:
    await channel.send(receiver.url("json", "/hook"), note(), OFFICER)
    [req] = receiver.hits("/hook")
    doc = req.json()
    assert doc["title"] == "I red · Riverside S03"
    assert doc["message"].startswith("S03 at 92% of capacity. Hold crowds at Zhongshan Rd.")
    assert "https://duty.example.cn/ack/a1" in doc["message"]
    assert doc["type"] == "failure"  # level I red


async def test_ntfy_gets_title_and_body(receiver: Receiver, channel: AppriseChannel) -> None:
    await channel.send(receiver.url("ntfy", "/crowd-alerts"), note(), OFFICER)
    [req] = receiver.requests
    doc = req.json()
    assert (doc["topic"], doc["title"]) == ("crowd-alerts", "I red · Riverside S03")
    assert doc["message"].startswith("S03 at 92% of capacity.")


async def test_gotify_gets_title_and_body(receiver: Receiver, channel: AppriseChannel) -> None:
    await channel.send(receiver.url("gotify", "/AbCdEfGhIjKl"), note(title="II orange · S04"), OFFICER)
    [req] = receiver.hits("/message")
    assert req.headers["x-gotify-key"] == "AbCdEfGhIjKl"
    assert req.json()["title"] == "II orange · S04"


@pytest.mark.parametrize(
    ("scheme", "path", "hit", "status", "retryable"),
    [
        ("json", "/hook", "/hook", 503, True),
        ("json", "/hook", "/hook", 500, True),
        ("json", "/hook", "/hook", 429, True),
        ("json", "/hook", "/hook", 400, False),
        ("json", "/hook", "/hook", 404, False),
        ("json", "/hook", "/hook", 401, False),
        ("ntfy", "/topic", "/", 503, True),  # ntfy's own five-digit code 50301 carries the status
        ("ntfy", "/topic", "/", 429, True),
        ("ntfy", "/topic", "/", 403, False),
        ("gotify", "/Token1234", "/message", 502, True),
        ("gotify", "/Token1234", "/message", 401, False),
    ],
)
async def test_http_status_decides_retryable(
    receiver: Receiver, channel: AppriseChannel, scheme: str, path: str, hit: str, status: int, retryable: bool
) -> None:
    receiver.script(hit, status)
    with pytest.raises(DeliveryError) as e:
        await channel.send(receiver.url(scheme, path), note(), OFFICER)
    assert e.value.retryable is retryable
    assert f"HTTP {status}" in e.value.message
    assert len(receiver.hits(hit)) == 1  # the channel itself never retries


async def test_connection_refused_is_retryable(channel: AppriseChannel) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeliveryError) as e:
        await channel.send(f"json://127.0.0.1:{port}/hook", note(), OFFICER)
    assert e.value.retryable and "connection" in e.value.message.lower()


async def test_hanging_server_times_out_retryable(receiver: Receiver) -> None:
    receiver.script("/slow", HANG)
    ch = AppriseChannel(timeout_s=0.5)
    try:
        with pytest.raises(DeliveryError) as e:
            await ch.send(receiver.url("json", "/slow"), note(), OFFICER)
    finally:
        ch.close()
    assert e.value.retryable and "timed out" in e.value.message


@pytest.mark.parametrize("url", ["gotify://127.0.0.1", "json://", "mailto://"])
async def test_unusable_url_is_permanent_without_io(receiver: Receiver, channel: AppriseChannel, url: str) -> None:
    assert channel.handles(url)
    with pytest.raises(DeliveryError) as e:
        await channel.send(url, note(), OFFICER)
    assert not e.value.retryable and "roster" in e.value.message
    assert receiver.requests == []


def test_handles_apprise_schemes_only(channel: AppriseChannel) -> None:
    for url in ("ntfy://h/t", "json://h/p", "dingtalk://tok", "wecombot://key", "feishu://tok", "gotify://h/t",
                "mailto://u:p@example.com"):  # fmt: skip
        assert channel.handles(url), url
    for url in ("webpush:sub1", "foo://bar", "not a url", ""):
        assert not channel.handles(url), url


async def test_error_text_never_carries_the_token(receiver: Receiver, channel: AppriseChannel) -> None:
    receiver.script("/message", 401)
    with pytest.raises(DeliveryError) as e:
        await channel.send(receiver.url("gotify", "/SeCrEtToKeN99"), note(), OFFICER)
    assert "SeCrEtToKeN99" not in e.value.message
