"""Secrets never reach a log line: tokens (in headers, in a mistaken URL, in the push stream's first message),
failed sign-ins, Web Push keys; and uvicorn's access log, served for real, shows the request with the token
redacted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from dashboard.app import create_app
from dashboard.auth import Principal, token_table
from dashboard.hub import Hub
from dashboard.logredact import RedactSecrets, redact
from dashboard.push_api import PushRegistry
from domain.clock import ManualClock
from domain.site import Site
from tests.dashboard.client import TestClient
from tests.dashboard.test_alerts_api import FakeActions
from tests.dashboard.test_push_api import PUBLIC_KEY, subscription
from tests.servers import free_port

SECRET = "tok-3f9c0d1e7a5b"  # the officer's token
OPS_SECRET = "ops-9b1d77e0c2aa"
WRONG = "guess-5e6f7a8b9c0d"  # a failed sign-in's token is a secret too (a typo of the real one)
WANG = Principal(person="wang.li", name="Wang Li", role="officer", zones=frozenset({"seg-1"}))


def server_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every line the service logged (the test's own HTTP client logs its URLs: not the service's)."""
    return [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]


@pytest.fixture
def app(mini_site: Site, clock: ManualClock) -> Any:
    actions = FakeActions(mini_site, clock)
    actions.raise_alert("a-seg1", "seg-1")
    push = PushRegistry(PUBLIC_KEY, now=clock.now)
    return create_app(Hub(mini_site, clock=clock), actions=actions, authenticate=token_table({SECRET: WANG}),
                      api_token=OPS_SECRET, push=push, ping_interval_s=0.05)  # fmt: skip


def test_no_secret_in_the_services_logs(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    sub = subscription()
    keys = sub["keys"]
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as client:
        good = {"Authorization": f"Bearer {SECRET}"}
        assert client.get("/api/me", headers=good).is_success
        assert client.post("/api/alerts/a-seg1/ack", json={"comment": "going"}, headers=good).is_success
        assert client.post("/api/push/subscriptions", json=sub, headers=good).status_code == 201
        wrong = {"Authorization": f"Bearer {WRONG}"}
        assert client.get("/api/me", headers=wrong).status_code == 401
        assert client.post("/api/alerts/a-seg1/ack", json={}, headers=wrong).status_code == 401
        assert client.get(f"/api/me?token={SECRET}").status_code == 400
        assert client.get(f"/api/zones?access_token={OPS_SECRET}").status_code == 400
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "auth", "token": WRONG})
            assert ws.receive()["code"] == 4401
        with client.websocket_connect("/ws") as ws:
            ws.send_json({"type": "auth", "token": SECRET})
            assert ws.receive_json()["type"] == "snapshot"
            ws.send_text(f"not json {SECRET}")  # a confused page echoing its token: counted, not logged
            ws.send_json({"type": "resync"})
            while ws.receive_json()["type"] != "snapshot":
                pass
    lines = server_records(caplog)
    assert lines, "nothing was logged at all: the test would pass for the wrong reason"
    for secret in (SECRET, OPS_SECRET, WRONG, keys["p256dh"], keys["auth"], sub["endpoint"]):
        assert not [line for line in lines if secret in line], secret
    assert app.state.access.failed == 3  # the failed sign-ins (two requests, one socket) are counted instead


def test_redaction_of_what_others_log() -> None:
    assert redact(f'127.0.0.1:5000 - "GET /api/me?zone=a&token={SECRET} HTTP/1.1" 400') == (
        '127.0.0.1:5000 - "GET /api/me?zone=a&token=[redacted] HTTP/1.1" 400'
    )
    assert redact(f"/ws?epoch=ab&API_TOKEN={SECRET}&seq=3") == "/ws?epoch=ab&API_TOKEN=[redacted]&seq=3"
    header = f"headers: {{'authorization': 'Bearer {SECRET}'}}"
    assert redact(header) == "headers: {'authorization': 'Bearer [redacted]'}"
    assert redact(f"/report?next=%3Ftoken%3D{SECRET}") == "/report?next=%3Ftoken%3D[redacted]"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:1", "GET", f"/x?token={SECRET}", "1.1", 400), None)  # fmt: skip
    assert RedactSecrets().filter(record) and SECRET not in record.getMessage()
    assert record.args is not None and len(record.args) == 5  # uvicorn's formatter unpacks five arguments


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def served(app: Any) -> Iterator[tuple[str, Captured]]:
    """The app under a real uvicorn with its access log on, as `crowdflow serve --log-level info` would run it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", access_log=True,
                                           lifespan="on", ws="websockets-sansio"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    captured = Captured()
    captured.setFormatter(uvicorn.logging.AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    access, error = logging.getLogger("uvicorn.access"), logging.getLogger("uvicorn.error")
    plain = Captured()
    access.addHandler(captured)
    error.addHandler(plain)
    try:
        yield f"127.0.0.1:{port}", captured
    finally:
        access.removeHandler(captured)
        error.removeHandler(plain)
        server.should_exit = True
        thread.join(20)
    assert not [line for line in plain.lines if SECRET in line or OPS_SECRET in line], plain.lines


def test_uvicorn_access_log_shows_the_request_but_not_the_token(served: tuple[str, Captured]) -> None:
    host, log = served
    with httpx.Client(base_url=f"http://{host}") as c:
        assert c.get("/api/me", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
        assert c.get(f"/api/me?token={SECRET}").status_code == 400
        assert c.get(f"/api/alerts?zone=seg-1&access_token={OPS_SECRET}").status_code == 400
        assert c.get("/api/me", headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
    with connect(f"ws://{host}/ws") as ws:
        ws.send(f'{{"type": "auth", "token": "{SECRET}"}}')
        assert '"snapshot"' in str(ws.recv(timeout=10))
    with pytest.raises(InvalidStatus) as info:  # the stream's handshake with a token in its URL: 400 too
        connect(f"ws://{host}/ws?epoch=x&token={SECRET}", open_timeout=10)
    assert info.value.response.status_code == 400
    deadline = time.monotonic() + 10
    while len(log.lines) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any('"GET /api/me?token=[redacted] HTTP/1.1" 400' in line for line in log.lines), log.lines
    assert any("access_token=[redacted]" in line for line in log.lines), log.lines
    for line in log.lines:
        assert SECRET not in line and OPS_SECRET not in line and WRONG not in line, line
