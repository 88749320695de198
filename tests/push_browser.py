"""A browser's side of Web Push for tests: its P-256 key pair and auth secret, the PushSubscription JSON it gives
a page, and decrypting what a push service would hand it (aes128gcm, through pywebpush's own http_ece)."""

from __future__ import annotations

import base64
import importlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def point(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The uncompressed public point, as PushSubscription.keys.p256dh and VAPID's applicationServerKey carry it."""
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def raw_private(key: ec.EllipticCurvePrivateKey) -> str:
    """A VAPID private key as the raw 32 bytes, base64url (one of the forms the config accepts)."""
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


class PushBrowser:
    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.subscription: dict[str, Any] = {
            "endpoint": endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point(self.key)), "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> Any:
        http_ece = importlib.import_module("http_ece")
        return json.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"))
