"""Request size limits (413 before the body is read whole) and rate limits on the write endpoints (token
buckets per principal and per client address, 429 with Retry-After)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest

from dashboard.app import create_app
from dashboard.auth import token_table
from dashboard.hub import Hub
from dashboard.limits import BodyLimit, RateLimit, RateLimiter
from domain.clock import ManualClock
from domain.site import Site
from tests.dashboard.client import TestClient
from tests.dashboard.test_alerts_api import TOKENS, FakeActions, auth


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def actions(mini_site: Site, clock: ManualClock) -> FakeActions:
    fake = FakeActions(mini_site, clock)
    fake.raise_alert("a-seg1", "seg-1")
    fake.raise_alert("a-plaza", "plaza")
    return fake


def make(hub: Hub, actions: FakeActions, ticks: Ticks, **kw: Any) -> TestClient:
    app = create_app(hub, actions=actions, authenticate=token_table(TOKENS), api_token="t-ops", rate_clock=ticks,
                     **kw)  # fmt: skip
    return TestClient(app)


# ---- body size ------------------------------------------------------------------------------------------


def test_a_body_over_the_bound_is_413_and_never_reaches_the_route(hub: Hub, actions: FakeActions, ticks: Ticks) -> None:
    client = make(hub, actions, ticks, max_body_bytes=1000)
    r = client.post("/api/alerts/a-seg1/comment", json={"text": "x" * 2000}, headers=auth("t-wang"))
    assert r.status_code == 413 and "request body over 1000 bytes" in r.json()["detail"]
    assert [h.action for h in actions.alerts["a-seg1"].history] == ["raised"]
    r = client.post("/api/alerts/a-seg1/comment", json={"text": "x" * 900}, headers=auth("t-wang"))
    assert r.status_code == 200  # under the bound: as before


def test_the_default_bound_takes_the_largest_real_body(hub: Hub, actions: FakeActions, ticks: Ticks) -> None:
    """A planned event over 500 zones of 100 characters (the schema's maxima) still fits in 64 KiB."""
    client = make(hub, actions, ticks)
    body = {"name": "n", "zones": ["z" * 100] * 500, "starts_at": 0, "ends_at": 1, "flow_factor": 2, "reason": "r"}
    r = client.post("/api/events", json=body, headers=auth("t-cmd"))
    assert r.status_code == 422 and "unknown zone" in r.text  # read and validated, not refused for its size
    r = client.post("/api/events", content=b"[" + b"0," * 40_000 + b"0]", headers=auth("t-cmd"))
    assert r.status_code == 413


async def test_a_chunked_body_is_cut_off_once_it_passes_the_bound() -> None:
    """No Content-Length: the middleware counts what arrives and answers 413 without reading the rest."""
    chunks_read = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal chunks_read
        while True:
            message = await receive()
            chunks_read += 1
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def body() -> AsyncIterator[bytes]:
        for _ in range(1000):
            yield b"x" * 1000

    transport = httpx.ASGITransport(app=BodyLimit(app, max_bytes=10_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        r = await c.post("/", content=body())
    assert r.status_code == 413 and "over 10000 bytes" in r.json()["detail"]
    assert chunks_read <= 11  # stopped at the bound, not after a megabyte


def test_a_bad_content_length_is_400() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never reached")

    async def call() -> int:
        status = 0

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"lots")]}
        await BodyLimit(app)(scope, receive, send)
        return status

    assert asyncio.run(call()) == 400


# ---- rate limits ----------------------------------------------------------------------------------------


def test_token_bucket_refills_at_its_rate() -> None:
    ticks = Ticks()
    limiter = RateLimiter(RateLimit(burst=3, per_s=0.5), now=ticks)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(2.0)  # one token every 2 s
    ticks.t = 1.0
    assert limiter.take("a") == pytest.approx(1.0)
    ticks.t = 2.0
    assert limiter.take("a") == 0.0 and limiter.take("b") == 0.0 and limiter.refused == 2
    with pytest.raises(ValueError, match="burst >= 1"):
        RateLimit(burst=0, per_s=1.0)


def test_the_number_of_buckets_is_bounded() -> None:
    limiter = RateLimiter(RateLimit(burst=1, per_s=1.0), now=Ticks(), max_keys=100)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100


def test_writes_over_the_principals_limit_are_429_with_retry_after(
    hub: Hub, actions: FakeActions, ticks: Ticks
) -> None:
    client = make(hub, actions, ticks, principal_limit=RateLimit(burst=3, per_s=0.1))
    for i in range(3):
        assert client.post("/api/alerts/a-seg1/comment", json={"text": f"c{i}"}, headers=auth("t-wang")).is_success
    r = client.post("/api/alerts/a-seg1/comment", json={"text": "c3"}, headers=auth("t-wang"))
    assert r.status_code == 429 and r.headers["retry-after"] == "10"
    assert "too many changes from wang.li: wait 10 s" in r.json()["detail"]
    assert len(actions.alerts["a-seg1"].history) == 4  # raised + three comments: the fourth never ran
    # another person is not held up by wang's burst, and reads are never limited
    assert client.post("/api/alerts/a-plaza/comment", json={"text": "ok"}, headers=auth("t-zhao")).is_success
    assert all(client.get("/api/alerts", headers=auth("t-wang")).is_success for _ in range(10))
    ticks.t = 10.0
    assert client.post("/api/alerts/a-seg1/comment", json={"text": "later"}, headers=auth("t-wang")).is_success
    assert client.get("/healthz").json()["access"]["rate_limited_principal"] == 1


def test_writes_over_the_address_limit_are_429_before_authentication(
    hub: Hub, actions: FakeActions, ticks: Ticks
) -> None:
    """One address guessing tokens (or several people behind it writing fast) is held back whoever it says it is."""
    client = make(hub, actions, ticks, address_limit=RateLimit(burst=4, per_s=0.5))
    for token in ("guess-1", "guess-2", "guess-3", "guess-4"):
        assert client.post("/api/alerts/a-seg1/ack", json={}, headers=auth(token)).status_code == 401
    r = client.post("/api/alerts/a-seg1/ack", json={}, headers=auth("t-wang"))
    assert r.status_code == 429 and r.headers["retry-after"] == "2" and "from your address" in r.json()["detail"]
    assert actions.alerts["a-seg1"].state == "raised"
    assert client.get("/api/me", headers=auth("t-wang")).is_success  # reads: not limited
    ticks.t = 2.0
    assert client.post("/api/alerts/a-seg1/ack", json={}, headers=auth("t-wang")).is_success
    health = client.get("/healthz").json()["access"]
    assert health["rate_limited_address"] == 1 and health["unknown_tokens"] == 4


def test_an_address_guessing_tokens_is_held_back_then_let_in_again(
    hub: Hub, actions: FakeActions, ticks: Ticks
) -> None:
    """Unknown tokens from one address: after the burst, even a good token waits (429, Retry-After) until the
    bucket refills; other addresses are not affected; the push stream is held back the same way."""
    client = make(hub, actions, ticks, failed_sign_in_limit=RateLimit(burst=3, per_s=0.2))
    for n in range(3):
        assert client.get("/api/me", headers=auth(f"guess-{n}")).status_code == 401
    r = client.get("/api/me", headers=auth("t-wang"))
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    assert "too many unknown tokens from your address: wait 5 s" in r.json()["detail"]
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "t-wang"})
        msg = ws.receive()
        # Not judged, so not "refused": 1013 Try Again Later (the page keeps its token; 4401 would forget it).
        assert msg["code"] == 1013 and "too many unknown tokens" in msg["reason"]
    ticks.t = 5.0
    assert client.get("/api/me", headers=auth("t-wang")).json()["person"] == "wang.li"
    health = client.get("/healthz").json()["access"]
    assert (health["unknown_tokens"], health["sign_ins_held_back"]) == (3, 2)
