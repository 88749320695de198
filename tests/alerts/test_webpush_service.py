"""Web Push through the service as wired: an officer subscribes through the API, an alert for their zone reaches
their browser's push endpoint (a local receiver standing in for the push service) encrypted and VAPID-signed,
and a subscription the push service says is gone is forgotten.

Real keys throughout: the service's VAPID key pair and the "browser's" P-256 key pair and auth secret are
generated here; the body is decrypted with the browser's private key as a browser would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from alerts.roster import default_roster_path, load_roster, with_tokens
from alerts.routing import Router
from crowdflow.config import load_config
from crowdflow.service import Service
from dashboard.push_api import STATE_NAME
from domain.levels import Level
from domain.loader import load_site
from domain.values import Detection, ZoneState
from tests.alerts.receiver import Receiver
from tests.push_browser import PushBrowser, point, raw_private, unb64url

ZONE = "pearl-ring-bridge"
OFFICER = "lfc-bridge-d"  # the bridge's own post (day shift)
TOKEN = "token-for-the-bridge-post"
SUBJECT = "mailto:duty-office@example.cn"
PUBLIC_URL = "https://cf.example.cn"
EVENING = dt.datetime(2026, 10, 3, 19, 45, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()  # day shift


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def roster_file(tmp_path: Path, receiver: Receiver) -> Path:
    """The shipped roster, its phones pointed at the receiver, and an API token for the bridge post."""
    text = default_roster_path().read_text(encoding="utf-8")
    text = text.replace("ntfy://127.0.0.1:8090/crowdflow-", f"json://127.0.0.1:{receiver.port}/ntfy/")
    text = text.replace("json://127.0.0.1:8091/", f"json://127.0.0.1:{receiver.port}/")
    text = with_tokens(text, {OFFICER: TOKEN})
    path = tmp_path / "roster.toml"
    path.write_text(text, encoding="utf-8")
    return path


def service(tmp_path: Path, receiver: Receiver, vapid_key: str) -> Service:
    cfg = load_config(None, env={})
    cfg.service.data_dir = str(tmp_path / "var")
    cfg.alerts.roster = str(roster_file(tmp_path, receiver))
    cfg.alerts.public_url = PUBLIC_URL
    cfg.alerts.vapid_private_key = vapid_key
    cfg.alerts.vapid_subject = SUBJECT
    return Service(cfg, quiet=True)


def crowded(level: Level, ts: float) -> tuple[Detection, ZoneState]:
    share = {Level.II: 0.85, Level.I: 1.1}[level]
    state = ZoneState(zone=ZONE, ts=ts, occupancy=5000 * share, capacity=5000, share=share, density=share,
                      inflow_per_min=300.0, outflow_per_min=120.0, arrivals_today=9000, level=level)  # fmt: skip
    det = Detection(zone=ZONE, ts=ts, level=level, cause="capacity",
                    evidence={"occupancy": 5000 * share, "capacity": 5000.0, "share": share},
                    message=f"Pearl Ring bridge at {share:.0%} of capacity")  # fmt: skip
    return det, state


async def arrived(receiver: Receiver, path: str, count: int) -> None:
    """Wait (off the loop, where the dispatcher runs) until `count` requests reached `path`."""
    await asyncio.to_thread(receiver.wait_until, lambda r: len(r.hits(path)) >= count, 20.0)


async def until_idle(svc: Service) -> None:
    """Let the dispatcher finish what it started: the last answer's effects (on_gone, the record) included."""
    for _ in range(400):  # polled: the dispatcher has no "idle" event to wait on; fails rather than hangs
        if not (svc.dispatcher.stats["in_flight"] or svc.dispatcher.stats["queued"]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the dispatcher never went idle: {svc.dispatcher.stats}")


def test_router_adds_each_persons_browser_channels() -> None:
    site = load_site()
    subs = {OFFICER: ["webpush:lfc-bridge-d", "webpush:lfc-bridge-d-2", "webpush:lfc-bridge-d"]}
    router = Router(load_roster(None, site), site, more_channels=lambda p: subs.get(p, []))
    [told] = router.recipients(ZONE, 0, EVENING)
    assert told.person == OFFICER
    assert told.channels == (
        "ntfy://127.0.0.1:8090/crowdflow-lfc-bridge-d", "webpush:lfc-bridge-d", "webpush:lfc-bridge-d-2"
    )  # fmt: skip
    leader = router.recipient("lead-lfc")
    assert leader is not None and leader.channels == ("ntfy://127.0.0.1:8090/crowdflow-lead-lfc",)
    subs[OFFICER] = []  # asked afresh each time: an unsubscribed browser is no longer a channel
    assert router.recipients(ZONE, 0, EVENING)[0].channels == ("ntfy://127.0.0.1:8090/crowdflow-lfc-bridge-d",)


async def test_an_alert_reaches_the_subscribed_browser_and_a_gone_one_is_forgotten(
    tmp_path: Path, receiver: Receiver
) -> None:
    vapid = ec.generate_private_key(ec.SECP256R1())
    svc = service(tmp_path, receiver, raw_private(vapid))
    phone = PushBrowser(f"http://127.0.0.1:{receiver.port}/push/v2/bridge-phone")
    stop = asyncio.Event()
    dispatcher = asyncio.create_task(svc.dispatcher.run(stop))
    try:
        app = httpx.ASGITransport(app=svc.app)
        async with httpx.AsyncClient(transport=app, base_url="http://127.0.0.1") as client:
            key = (await client.get("/api/push/key")).json()["public_key"]
            assert unb64url(key) == point(vapid)  # the page subscribes with the key the service signs with
            r = await client.post("/api/push/subscriptions", json=phone.subscription,
                                  headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            assert r.status_code == 201, r.text
            assert r.json()["id"] == OFFICER
        assert svc.journal.load_state(STATE_NAME) is not None  # kept where the service reads it at start

        # An alert for the bridge: the manager tells the bridge post, on ntfy (the receiver) and in the browser.
        det, state = crowded(Level.II, EVENING)
        [alert] = svc.alerts.observe([det], [state], EVENING)
        await arrived(receiver, "/push/v2/bridge-phone", 1)
        await until_idle(svc)
        [push] = receiver.hits("/push/v2/bridge-phone")
        assert receiver.hits(f"/ntfy/{OFFICER}")  # the roster's own channel too

        h = push.headers
        assert (h["content-encoding"], h["urgency"]) == ("aes128gcm", "high")
        scheme, _, params = h["authorization"].partition(" ")
        fields = dict(p.split("=", 1) for p in params.split(","))
        assert scheme == "vapid" and fields["k"] == key
        head, claims, sig = fields["t"].split(".")
        raw = unb64url(sig)
        vapid.public_key().verify(  # raises unless the service's VAPID key signed it
            encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
            f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()),
        )  # fmt: skip
        assert json.loads(unb64url(claims))["sub"] == SUBJECT
        assert b"Pearl" not in push.body  # encrypted on the wire
        payload = phone.decrypt(push.body)
        assert payload["alert_ids"] == [alert.id] and payload["zones"] == [ZONE] and payload["level"] == 3
        assert payload["url"] == f"{PUBLIC_URL}/officer#alert={alert.id}" and "II" in payload["title"]

        [sent] = [d for d in svc.alerts.deliveries(alert.id) if d["attempts"]]
        tried = {(a["person"], a["channel"], a["ok"]) for a in sent["attempts"]}
        assert (OFFICER, "webpush", True) in tried

        # The browser unsubscribed: the push service answers 410, and the subscription is forgotten.
        receiver.script("/push/v2/bridge-phone", 410)
        det, state = crowded(Level.I, EVENING + 60)
        svc.alerts.observe([det], [state], EVENING + 60)
        await arrived(receiver, "/push/v2/bridge-phone", 2)
        await until_idle(svc)
        assert svc.push is not None and OFFICER not in svc.push.subscriptions
        assert svc.journal.load_state(STATE_NAME) == {}
        [told] = svc.router.recipients(ZONE, 0, EVENING + 60)
        assert not any(c.startswith("webpush:") for c in told.channels)
    finally:
        stop.set()
        await dispatcher
        await svc.dispatcher.drain(10.0)
        svc.journal.close()
        svc.store.close()


async def test_without_a_vapid_key_there_is_no_push(tmp_path: Path, receiver: Receiver) -> None:
    svc = service(tmp_path, receiver, "")
    try:
        assert svc.push is None
        [told] = svc.router.recipients(ZONE, 0, EVENING)
        assert told.channels == (f"json://127.0.0.1:{receiver.port}/ntfy/{OFFICER}",)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://127.0.0.1") as c:
            r = await c.get("/api/push/key")
        assert r.status_code == 404 and "vapid_private_key is not set" in r.json()["detail"]
    finally:
        svc.journal.close()
        svc.store.close()
