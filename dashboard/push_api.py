"""Officers' Web Push subscriptions: the registry the service keeps, and the API a browser subscribes through.

A browser that subscribes to push (the officer page, dashboard/static/officer.js) hands over a
PushSubscription: the push service's endpoint URL and the browser's keys. `PushRegistry` keeps those per
person under ids "<person>", "<person>-2", ... (one per device), persists every change through the `save`
callback the service gives it (the alert journal's "webpush_subscriptions" state), and tells the router
which extra channels a person has: "webpush:<id>" for each subscription (alerts.routing.Router's
`more_channels`). The Web Push channel reads the subscriptions through `PushRegistry.subscriptions` and calls
`PushRegistry.gone(id)` when a push service answers 404/410 (the browser unsubscribed).

Routes under /api (`push_router`):
- GET /api/push/key: the VAPID application server public key (base64url), open: it is public by design;
  404 saying so when Web Push is not configured.
- POST /api/push/subscriptions (token): store the caller's subscription, answer its id; the same endpoint again
  gives the same id (a page re-registering at each load), and an endpoint moves to whoever registers it last
  (a phone handed over at the shift change stops receiving its former owner's alerts).
- GET /api/push/subscriptions (token): the caller's own subscriptions.
- DELETE /api/push/subscriptions/{id} (token): the caller's own only.

The registry is not thread-safe: the API handlers and the channel's `gone` both run on the service's event loop.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the route signatures, and the auth
# dependency they name (`Caller`) is local to push_router.
import base64
import binascii
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from dashboard.access import Access
from dashboard.auth import Principal

log = logging.getLogger(__name__)

STATE_NAME = "webpush_subscriptions"  # the alert journal's service state holding the registry
CHANNEL_PREFIX = "webpush:"
MAX_PER_PERSON = 5  # devices per person; a sixth replaces the oldest (an old phone's is dead anyway)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # plain http allowed only here (tests, a lab push server)
ENDPOINT_MAX = 2048
P256_POINT_BYTES = 65  # an uncompressed P-256 point: 0x04 || X || Y (RFC 8291 §3.2)
AUTH_SECRET_BYTES = 16  # RFC 8291 §3.2

NOT_CONFIGURED = (
    "Web Push is not configured on this service ([alerts] vapid_private_key is not set): alerts still reach "
    "you through your roster channels (ntfy, DingTalk, WeCom)"
)

SaveState = Callable[[dict[str, Any]], None]


class SubscriptionError(ValueError):
    """A PushSubscription the service cannot use; the message says which field and why."""


def _unb64url(text: str) -> bytes:
    text = text.strip().rstrip("=")
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def check_endpoint(endpoint: str) -> str:
    """The endpoint if a push service may be posted to: https, or http on this machine only.

    >>> check_endpoint("https://fcm.googleapis.com/fcm/send/abc")
    'https://fcm.googleapis.com/fcm/send/abc'
    >>> check_endpoint("http://127.0.0.1:8093/push/1")
    'http://127.0.0.1:8093/push/1'

    Raises SubscriptionError for anything else (plain http elsewhere, a user name in the URL, not a URL).
    """
    if len(endpoint) > ENDPOINT_MAX:
        raise SubscriptionError(f"endpoint: longer than {ENDPOINT_MAX} characters")
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        parts.port  # noqa: B018  a malformed port raises here
    except ValueError:
        raise SubscriptionError("endpoint: not a URL") from None
    if parts.username is not None or parts.password is not None or any(c.isspace() for c in endpoint):
        raise SubscriptionError("endpoint: must not carry a user name, password or spaces")
    if parts.scheme == "https" and host:
        return endpoint
    if parts.scheme == "http" and host in LOCAL_HOSTS:
        return endpoint
    raise SubscriptionError("endpoint: must be an https URL (plain http only for 127.0.0.1 or localhost)")


def check_keys(p256dh: str, auth: str) -> None:
    """The browser's keys as RFC 8291 has them: a P-256 public point and a 16-byte auth secret, base64url."""
    try:
        point = _unb64url(p256dh)
    except (ValueError, binascii.Error):
        raise SubscriptionError("keys.p256dh: not base64url") from None
    if len(point) != P256_POINT_BYTES or point[0] != 4:
        raise SubscriptionError(f"keys.p256dh: must be an uncompressed P-256 point ({P256_POINT_BYTES} bytes)")
    try:
        ec = importlib.import_module("cryptography.hazmat.primitives.asymmetric.ec")
    except ImportError:  # without pywebpush (and cryptography) there is no registry to call this anyway
        ec = None
    if ec is not None:
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError:
            raise SubscriptionError("keys.p256dh: not a point on the P-256 curve") from None
    try:
        secret = _unb64url(auth)
    except (ValueError, binascii.Error):
        raise SubscriptionError("keys.auth: not base64url") from None
    if len(secret) != AUTH_SECRET_BYTES:
        raise SubscriptionError(f"keys.auth: must be {AUTH_SECRET_BYTES} bytes")


def application_server_key(vapid_private_key: str) -> str:
    """The VAPID public key browsers subscribe with (base64url of the uncompressed point), from the private key
    in any form the Web Push channel accepts (base64url, PEM text, or a PEM/DER file path)."""
    from alerts.notify.webpush import load_vapid  # the channel's own reader: the page's key matches its signer

    serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
    vapid = load_vapid(vapid_private_key)
    raw: bytes = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(raw)


class _Subscriptions(Mapping[str, Mapping[str, Any]]):
    """id -> the PushSubscription JSON ({"endpoint", "keys"}) as the Web Push channel reads it, live."""

    def __init__(self, entries: dict[str, dict[str, Any]]) -> None:
        self._entries = entries

    def __getitem__(self, sub_id: str) -> Mapping[str, Any]:
        e = self._entries[sub_id]
        return {"endpoint": e["endpoint"], "keys": dict(e["keys"])}

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class PushRegistry:
    """Browsers' PushSubscriptions per person, persisted through `save` at every change.

    public_key: the VAPID application server key pages subscribe with (`application_server_key`).
    saved: what `save` was last given (the journal's state), or {}; entries are
        {id: {"person", "endpoint", "keys": {"p256dh", "auth"}, "added_at"}}. An entry without "person" (a
        subscription put in by hand for a roster channel "webpush:<id>") is kept and sent to, but belongs to
        nobody here: no one can delete it through the API, and it is no one's extra channel.
    now: the clock for "added_at" (epoch seconds).
    """

    def __init__(
        self,
        public_key: str,
        *,
        saved: Mapping[str, Any] | None = None,
        save: SaveState | None = None,
        now: Callable[[], float],
        max_per_person: int = MAX_PER_PERSON,
    ) -> None:
        if not public_key:
            raise ValueError("PushRegistry needs the VAPID public key pages subscribe with")
        if max_per_person < 1:
            raise ValueError(f"max_per_person must be at least 1, got {max_per_person}")
        self.public_key = public_key
        self._save = save
        self._now = now
        self.max_per_person = max_per_person
        self._entries: dict[str, dict[str, Any]] = {}
        for sub_id, raw in (saved or {}).items():
            entry = self._loaded(str(sub_id), raw)
            if entry is not None:
                self._entries[str(sub_id)] = entry
        self.subscriptions: Mapping[str, Mapping[str, Any]] = _Subscriptions(self._entries)

    @staticmethod
    def _loaded(sub_id: str, raw: object) -> dict[str, Any] | None:
        if not isinstance(raw, Mapping):
            log.warning("dropping stored Web Push subscription %r: not an object", sub_id)
            return None
        keys = raw.get("keys")
        try:
            check_endpoint(str(raw.get("endpoint", "")))
            if not isinstance(keys, Mapping):
                raise SubscriptionError("keys: missing")
            check_keys(str(keys.get("p256dh", "")), str(keys.get("auth", "")))
        except SubscriptionError as e:
            log.warning("dropping stored Web Push subscription %r: %s", sub_id, e)
            return None
        person = raw.get("person")
        added = raw.get("added_at")
        return {
            "person": person if isinstance(person, str) and person else None,
            "endpoint": str(raw["endpoint"]),
            "keys": {"p256dh": str(keys["p256dh"]), "auth": str(keys["auth"])},
            "added_at": float(added) if isinstance(added, int | float) else 0.0,
        }

    # -- reading --

    def owner(self, sub_id: str) -> str | None:
        e = self._entries.get(sub_id)
        return None if e is None else e["person"]

    def ids_of(self, person: str) -> list[str]:
        """The person's subscription ids, oldest first."""
        mine = [(e["added_at"], i) for i, e in self._entries.items() if e["person"] == person]
        return [i for _, i in sorted(mine)]

    def channels_of(self, person: str) -> tuple[str, ...]:
        """Extra channels for the router: "webpush:<id>" for each of the person's subscriptions."""
        return tuple(CHANNEL_PREFIX + i for i in self.ids_of(person))

    def listing(self, person: str) -> list[dict[str, Any]]:
        """The person's subscriptions as the API shows them (the endpoint's host, not its secret path)."""
        return [
            {"id": i, "channel": CHANNEL_PREFIX + i, "push_service": urlsplit(self._entries[i]["endpoint"]).hostname,
             "added_at": self._entries[i]["added_at"]}
            for i in self.ids_of(person)
        ]  # fmt: skip

    def to_state(self) -> dict[str, Any]:
        return {i: {**e, "keys": dict(e["keys"])} for i, e in self._entries.items()}

    # -- changing --

    def add(self, person: str, subscription: Mapping[str, Any]) -> tuple[str, bool, list[str]]:
        """Store `subscription` for `person`: (its id, True if new, ids of the person's oldest it replaced).

        Raises SubscriptionError for an endpoint or keys the service cannot use.
        """
        endpoint = check_endpoint(str(subscription.get("endpoint", "")))
        keys = subscription.get("keys")
        if not isinstance(keys, Mapping):
            raise SubscriptionError("keys: must hold the browser's p256dh and auth")
        p256dh, auth = str(keys.get("p256dh", "")), str(keys.get("auth", ""))
        check_keys(p256dh, auth)
        entries = dict(self._entries)
        same = next((i for i, e in entries.items() if e["endpoint"] == endpoint), None)
        if same is not None and entries[same]["person"] == person:
            entries[same] = {**entries[same], "keys": {"p256dh": p256dh, "auth": auth}}
            self._commit(entries)
            return same, False, []
        if same is not None:  # another person's device before: it is this person's now
            del entries[same]
        replaced: list[str] = []
        mine = sorted((e["added_at"], i) for i, e in entries.items() if e["person"] == person)
        while len(mine) >= self.max_per_person:
            _, oldest = mine.pop(0)
            del entries[oldest]
            replaced.append(oldest)
        sub_id = self._free_id(person, entries)
        entries[sub_id] = {"person": person, "endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth},
                           "added_at": self._now()}  # fmt: skip
        self._commit(entries)
        return sub_id, True, replaced

    def remove(self, sub_id: str) -> bool:
        if sub_id not in self._entries:
            return False
        entries = dict(self._entries)
        del entries[sub_id]
        self._commit(entries)
        return True

    def gone(self, sub_id: str) -> None:
        """The push service says the subscription no longer exists (HTTP 404/410): forget it."""
        if self.remove(sub_id):
            log.info("Web Push subscription %s is gone (the browser unsubscribed): removed", sub_id)

    @staticmethod
    def _free_id(person: str, entries: Mapping[str, Any]) -> str:
        if person not in entries:
            return person
        n = 2
        while f"{person}-{n}" in entries:
            n += 1
        return f"{person}-{n}"

    def _commit(self, entries: dict[str, dict[str, Any]]) -> None:
        # Saved first: when the journal refuses, nothing changes here either and the caller hears why.
        if self._save is not None:
            self._save({i: {**e, "keys": dict(e["keys"])} for i, e in entries.items()})
        self._entries.clear()
        self._entries.update(entries)


# ---- the API ------------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeysBody(_Body):
    p256dh: str = Field(min_length=1, max_length=200)
    auth: str = Field(min_length=1, max_length=100)


class SubscriptionBody(_Body):
    """PushSubscription.toJSON() as browsers give it."""

    endpoint: str = Field(min_length=1, max_length=ENDPOINT_MAX)
    expirationTime: float | None = None  # the browser's own field name
    keys: KeysBody


def _json(body: object, status_code: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status_code, media_type="application/json")


def push_router(access: Access, push: PushRegistry | None) -> APIRouter:
    """Routes under /api for Web Push. With `push` None (no VAPID key) they answer 404 saying so."""
    router = APIRouter(prefix="/api/push")
    Caller = Annotated[Principal, Depends(access.require("push.subscribe"))]

    def need() -> PushRegistry:
        if push is None:
            raise HTTPException(404, NOT_CONFIGURED)
        return push

    @router.get("/key")
    async def key() -> Response:
        return _json({"public_key": need().public_key})

    @router.get("/subscriptions")
    async def mine(who: Caller) -> Response:
        return _json(need().listing(who.person))

    @router.post("/subscriptions", status_code=201)
    async def subscribe(body: SubscriptionBody, who: Caller) -> Response:
        registry = need()
        try:
            sub_id, new, replaced = registry.add(who.person, body.model_dump())
        except SubscriptionError as e:
            raise HTTPException(422, str(e)) from None
        return _json(
            {"id": sub_id, "channel": CHANNEL_PREFIX + sub_id, "person": who.person, "replaced": replaced},
            201 if new else 200,
        )

    @router.delete("/subscriptions/{sub_id}")
    async def unsubscribe(sub_id: str, who: Caller) -> Response:
        registry = need()
        owner = registry.owner(sub_id)
        if sub_id not in registry.subscriptions:
            raise HTTPException(404, f"unknown Web Push subscription {sub_id!r}")
        if owner != who.person:
            raise HTTPException(403, f"Web Push subscription {sub_id!r} is not yours: you may remove only your own")
        registry.remove(sub_id)
        return _json({"id": sub_id, "removed": True})

    return router
