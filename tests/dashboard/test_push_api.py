"""Web Push subscriptions through the API: the key, storing a browser's subscription per person and device,
validation, removal of one's own only, persistence through the save callback, and the registry's views."""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dashboard.app import create_app
from dashboard.auth import Principal, token_table
from dashboard.hub import Hub
from dashboard.push_api import NOT_CONFIGURED, PushRegistry, SubscriptionError, application_server_key
from domain.clock import ManualClock
from tests.dashboard.client import TestClient
from tests.dashboard.conftest import T0
from tests.push_browser import PushBrowser, b64url, point, raw_private

WANG = Principal(person="wang.li", name="Wang Li", role="officer", zones=frozenset({"seg-1"}))
ZHAO = Principal(person="zhao.min", name="Zhao Min", role="officer", zones=frozenset({"plaza"}))
CMD = Principal(person="cmd.duty", name="Command centre", role="command", zones=None)
TOKENS = {"t-wang": WANG, "t-zhao": ZHAO, "t-cmd": CMD}
PUBLIC_KEY = "BPublicKeyForTheTest"


def browser_keys() -> dict[str, str]:
    """What a browser puts in PushSubscription.keys: a fresh P-256 point and a 16-byte auth secret."""
    keys: dict[str, str] = PushBrowser("https://unused.example").subscription["keys"]
    return keys


def subscription(endpoint: str = "https://fcm.googleapis.com/fcm/send/dev-1") -> dict[str, Any]:
    return {"endpoint": endpoint, "expirationTime": None, "keys": browser_keys()}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Saved:
    """The save callback's far end (the journal in the service): every state it was given."""

    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []
        self.fail = False

    def __call__(self, state: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("disk full")
        self.states.append(state)

    @property
    def last(self) -> dict[str, Any]:
        return self.states[-1]


@pytest.fixture
def saved() -> Saved:
    return Saved()


@pytest.fixture
def registry(saved: Saved, clock: ManualClock) -> PushRegistry:
    return PushRegistry(PUBLIC_KEY, saved={}, save=saved, now=clock.now)


@pytest.fixture
def client(hub: Hub, registry: PushRegistry) -> TestClient:
    return TestClient(create_app(hub, authenticate=token_table(TOKENS), push=registry))


# ---- the key ------------------------------------------------------------------------------------------


def test_key_is_served_without_a_token(client: TestClient) -> None:
    r = client.get("/api/push/key")
    assert r.status_code == 200 and r.json() == {"public_key": PUBLIC_KEY}


def test_without_push_configured_every_route_says_so(hub: Hub) -> None:
    client = TestClient(create_app(hub, authenticate=token_table(TOKENS)))
    for method, path, body in (("GET", "/api/push/key", None), ("GET", "/api/push/subscriptions", None),
                               ("POST", "/api/push/subscriptions", subscription()),
                               ("DELETE", "/api/push/subscriptions/wang.li", None)):  # fmt: skip
        r = client.request(method, path, json=body, headers=auth("t-wang"))
        assert r.status_code == 404 and r.json()["detail"] == NOT_CONFIGURED, path
    assert "vapid_private_key" in NOT_CONFIGURED and "roster channels" in NOT_CONFIGURED


def test_application_server_key_is_the_public_half_of_the_vapid_key(tmp_path: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = raw_private(key)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    path = tmp_path / "vapid.pem"
    path.write_bytes(pem)
    for given in (raw, pem.decode(), str(path)):
        assert application_server_key(given) == b64url(point(key))
    with pytest.raises(ValueError, match="vapid_private_key"):
        application_server_key("not a key")


# ---- subscribing ----------------------------------------------------------------------------------------


def test_subscribe_stores_per_person_and_device(client: TestClient, registry: PushRegistry, saved: Saved) -> None:
    phone = subscription("https://fcm.googleapis.com/fcm/send/phone")
    r = client.post("/api/push/subscriptions", json=phone, headers=auth("t-wang"))
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "wang.li", "channel": "webpush:wang.li", "person": "wang.li", "replaced": []}
    assert registry.subscriptions["wang.li"] == {"endpoint": phone["endpoint"], "keys": phone["keys"]}
    assert saved.last["wang.li"]["person"] == "wang.li" and saved.last["wang.li"]["added_at"] == T0

    # The page registers again at every load: the same endpoint keeps its id, with the browser's current keys.
    again = {**phone, "keys": browser_keys()}
    r = client.post("/api/push/subscriptions", json=again, headers=auth("t-wang"))
    assert r.status_code == 200 and r.json()["id"] == "wang.li"
    assert registry.subscriptions["wang.li"]["keys"] == again["keys"]

    tablet = subscription("https://updates.push.services.mozilla.com/wpush/v2/tablet")
    r = client.post("/api/push/subscriptions", json=tablet, headers=auth("t-wang"))
    assert r.status_code == 201 and r.json()["id"] == "wang.li-2"
    assert registry.channels_of("wang.li") == ("webpush:wang.li", "webpush:wang.li-2")
    assert registry.channels_of("zhao.min") == ()

    listing = client.get("/api/push/subscriptions", headers=auth("t-wang")).json()
    assert [(s["id"], s["push_service"]) for s in listing] == [
        ("wang.li", "fcm.googleapis.com"), ("wang.li-2", "updates.push.services.mozilla.com")
    ]  # fmt: skip
    assert "phone" not in str(listing)  # the endpoint's path is the device's secret address: not echoed
    assert client.get("/api/push/subscriptions", headers=auth("t-zhao")).json() == []


def test_subscribing_needs_a_token(client: TestClient, registry: PushRegistry) -> None:
    assert client.post("/api/push/subscriptions", json=subscription()).status_code == 401
    assert client.post("/api/push/subscriptions", json=subscription(), headers=auth("nope")).status_code == 401
    assert client.get("/api/push/subscriptions").status_code == 401
    assert len(registry.subscriptions) == 0


def test_a_handed_over_phone_moves_to_whoever_registers_it(client: TestClient, registry: PushRegistry) -> None:
    phone = subscription()
    client.post("/api/push/subscriptions", json=phone, headers=auth("t-wang"))
    r = client.post("/api/push/subscriptions", json=phone, headers=auth("t-zhao"))
    assert r.status_code == 201 and r.json()["id"] == "zhao.min"
    assert registry.channels_of("wang.li") == () and registry.channels_of("zhao.min") == ("webpush:zhao.min",)


def test_a_sixth_device_replaces_the_oldest(hub: Hub, saved: Saved, clock: ManualClock) -> None:
    registry = PushRegistry(PUBLIC_KEY, save=saved, now=clock.now, max_per_person=5)
    client = TestClient(create_app(hub, authenticate=token_table(TOKENS), push=registry))
    got = []
    for n in range(6):
        clock.advance(60)
        r = client.post("/api/push/subscriptions", json=subscription(f"https://push.example.cn/d{n}"),
                        headers=auth("t-wang"))  # fmt: skip
        got.append((r.json()["id"], r.json()["replaced"]))
    assert got[:5] == [("wang.li", []), ("wang.li-2", []), ("wang.li-3", []), ("wang.li-4", []), ("wang.li-5", [])]
    assert got[5] == ("wang.li", ["wang.li"])  # the oldest's id is free again
    assert registry.subscriptions["wang.li"]["endpoint"] == "https://push.example.cn/d5"
    assert len(registry.ids_of("wang.li")) == 5


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"endpoint": "http://push.example.cn/x"}, "endpoint: must be an https URL"),
        ({"endpoint": "ftp://push.example.cn/x"}, "endpoint: must be an https URL"),
        ({"endpoint": "https://"}, "endpoint: must be an https URL"),
        ({"endpoint": "https://user:pw@push.example.cn/x"}, "must not carry a user name"),
        ({"endpoint": "https://push.example.cn:99999/x"}, "endpoint: not a URL"),
        ({"endpoint": "https://push.example.cn/" + "x" * 2100}, None),
        ({"keys": {"p256dh": "***", "auth": b64url(os.urandom(16))}}, "keys.p256dh: not base64url"),
        ({"keys": {"p256dh": b64url(b"\x04" + os.urandom(20)), "auth": b64url(os.urandom(16))}},
         "keys.p256dh: must be an uncompressed P-256 point"),
        ({"keys": {"p256dh": b64url(b"\x04" + b"\x01" * 64), "auth": b64url(os.urandom(16))}},
         "keys.p256dh: not a point on the P-256 curve"),
        ({"keys": {"p256dh": browser_keys()["p256dh"], "auth": b64url(os.urandom(8))}}, "keys.auth: must be 16 bytes"),
        ({"keys": {"p256dh": browser_keys()["p256dh"]}}, None),
        ({"keys": None}, None),
        ({"extra": 1}, None),
    ],
)
def test_unusable_subscriptions_are_422(
    client: TestClient, registry: PushRegistry, change: dict[str, Any], needle: str | None
) -> None:
    r = client.post("/api/push/subscriptions", json={**subscription(), **change}, headers=auth("t-wang"))
    assert r.status_code == 422, r.text
    if needle is not None:
        assert needle in r.json()["detail"]
    assert len(registry.subscriptions) == 0


def test_plain_http_is_allowed_on_this_machine_only(client: TestClient) -> None:
    for endpoint in ("http://127.0.0.1:8093/push/1", "http://localhost/push/2", "http://[::1]:9/push/3"):
        r = client.post("/api/push/subscriptions", json=subscription(endpoint), headers=auth("t-wang"))
        assert r.status_code == 201, (endpoint, r.text)


# ---- removing ---------------------------------------------------------------------------------------------


def test_delete_own_only(client: TestClient, registry: PushRegistry, saved: Saved) -> None:
    client.post("/api/push/subscriptions", json=subscription(), headers=auth("t-wang"))
    r = client.delete("/api/push/subscriptions/wang.li", headers=auth("t-zhao"))
    assert r.status_code == 403 and "not yours" in r.json()["detail"]
    r = client.delete("/api/push/subscriptions/wang.li", headers=auth("t-cmd"))
    assert r.status_code == 403  # command too: a device is its owner's to switch off
    assert client.delete("/api/push/subscriptions/wang.li").status_code == 401
    assert "wang.li" in registry.subscriptions
    r = client.delete("/api/push/subscriptions/wang.li", headers=auth("t-wang"))
    assert r.status_code == 200 and r.json() == {"id": "wang.li", "removed": True}
    assert "wang.li" not in registry.subscriptions and saved.last == {}
    r = client.delete("/api/push/subscriptions/wang.li", headers=auth("t-wang"))
    assert r.status_code == 404 and r.json()["detail"] == "unknown Web Push subscription 'wang.li'"


# ---- the registry itself -------------------------------------------------------------------------------------


def test_state_round_trips_and_gone_subscriptions_are_forgotten(saved: Saved, clock: ManualClock) -> None:
    first = PushRegistry(PUBLIC_KEY, save=saved, now=clock.now)
    first.add("wang.li", subscription("https://push.example.cn/a"))
    first.add("wang.li", subscription("https://push.example.cn/b"))
    again = PushRegistry(PUBLIC_KEY, saved=saved.last, save=saved, now=clock.now)  # after a restart
    assert dict(again.subscriptions) == dict(first.subscriptions)
    assert again.channels_of("wang.li") == ("webpush:wang.li", "webpush:wang.li-2")
    again.gone("wang.li")
    assert again.channels_of("wang.li") == ("webpush:wang.li-2",) and list(saved.last) == ["wang.li-2"]
    again.gone("wang.li")  # twice (two notifications in flight): nothing more happens
    assert list(saved.last) == ["wang.li-2"]


def test_stored_entries_without_an_owner_are_kept_and_broken_ones_dropped(clock: ManualClock) -> None:
    by_hand = subscription("https://push.example.cn/wall-tablet")  # as a roster "webpush:wall-tablet" names it
    saved = {
        "wall-tablet": {"endpoint": by_hand["endpoint"], "keys": by_hand["keys"]},
        "broken": {"endpoint": "ftp://x", "keys": {}},
        "junk": 42,
    }
    registry = PushRegistry(PUBLIC_KEY, saved=saved, now=clock.now)
    assert list(registry.subscriptions) == ["wall-tablet"]
    assert registry.owner("wall-tablet") is None and registry.channels_of("wall-tablet") == ()


def test_a_failing_save_changes_nothing(saved: Saved, clock: ManualClock) -> None:
    registry = PushRegistry(PUBLIC_KEY, save=saved, now=clock.now)
    registry.add("wang.li", subscription("https://push.example.cn/a"))
    saved.fail = True
    with pytest.raises(OSError, match="disk full"):
        registry.add("wang.li", subscription("https://push.example.cn/b"))
    with pytest.raises(OSError):
        registry.remove("wang.li")
    assert registry.ids_of("wang.li") == ["wang.li"]


def test_registry_refuses_bad_settings_and_input(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="VAPID public key"):
        PushRegistry("", now=clock.now)
    with pytest.raises(ValueError, match="max_per_person"):
        PushRegistry(PUBLIC_KEY, now=clock.now, max_per_person=0)
    registry = PushRegistry(PUBLIC_KEY, now=clock.now)
    with pytest.raises(SubscriptionError, match="keys"):
        registry.add("wang.li", {"endpoint": "https://push.example.cn/a"})


def test_ids_do_not_collide_with_another_persons(clock: ManualClock) -> None:
    # Person ids may end in "-2" themselves: an id is never reused while someone holds it.
    registry = PushRegistry(PUBLIC_KEY, now=clock.now)
    assert registry.add("ops", subscription("https://push.example.cn/1"))[0] == "ops"
    assert registry.add("ops-2", subscription("https://push.example.cn/2"))[0] == "ops-2"
    assert registry.add("ops", subscription("https://push.example.cn/3"))[0] == "ops-3"
    assert registry.channels_of("ops") == ("webpush:ops", "webpush:ops-3")
