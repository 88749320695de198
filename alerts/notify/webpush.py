"""Web Push (VAPID, RFC 8030/8291/8292) to officers' browsers: optional, through pywebpush.

Browsers deliver through their vendor's push service (Google's is unreachable in mainland China), so this is
an extra channel beside the domestic ones, never the only one. A recipient's channel is "webpush:<id>"; the
PushSubscription JSON the browser gave for that id comes from a mapping the service keeps (and may update).

The push service's answer decides: 201 delivered; 404/410 the subscription is gone (permanent, and
`on_gone(id)` lets the service forget it); 429/5xx (and 408/425) retry; other 4xx permanent.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

from alerts.model import Notification, Recipient
from alerts.notify import render
from alerts.notify.base import DeliveryError, http_retryable, retry_after_seconds, run_blocking, scheme_of, scrub
from domain.levels import Level

GONE = frozenset({404, 410})


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"Web Push needs the optional package pywebpush ({name} is missing): "
            "run `pip install 'crowdflow[webpush]'`, or drop the webpush: channels from the roster"
        ) from e


class WebPushChannel:
    """Sends "webpush:<subscription id>" channels.

    vapid_private_key: the VAPID private key as base64url (raw 32 bytes or DER), PEM text, or a path to a
    PEM/DER file. vapid_subject: a "mailto:" or "https:" contact the push services can reach (RFC 8292).
    ttl_s: how long a push service keeps the message for a phone that is offline. timeout_s: one send's deadline,
    at or under the Dispatcher's, so the thread is free again when the dispatcher gives up on it.
    """

    def __init__(
        self,
        subscriptions: Mapping[str, Mapping[str, Any]],
        *,
        vapid_private_key: str,
        vapid_subject: str,
        ttl_s: int = 3600,
        timeout_s: float = 8.0,
        max_workers: int = 4,
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        self._webpush = _import("pywebpush")
        self._requests = _import("requests")
        if not vapid_subject.startswith(("mailto:", "https:")):
            raise ValueError(f"vapid_subject must be a 'mailto:' or 'https:' contact (RFC 8292), got {vapid_subject!r}")
        if ttl_s < 0 or timeout_s <= 0 or max_workers < 1:
            raise ValueError(
                f"WebPushChannel needs ttl_s >= 0, timeout_s > 0, max_workers >= 1; "
                f"got {ttl_s}, {timeout_s}, {max_workers}"
            )
        self._vapid = load_vapid(vapid_private_key)
        self._subject = vapid_subject
        self._subscriptions = subscriptions
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._on_gone = on_gone
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="webpush")

    def handles(self, url: str) -> bool:
        return scheme_of(url) == "webpush"

    async def send(self, url: str, n: Notification, r: Recipient) -> None:
        sub_id = url.partition(":")[2]
        sub = self._subscriptions.get(sub_id)
        if sub is None:
            raise DeliveryError("no stored Web Push subscription with this id (browser never subscribed?)", False)
        problem = _check_subscription(sub)
        if problem:
            raise DeliveryError(f"stored Web Push subscription is unusable: {problem}", retryable=False)
        headers = {"Urgency": "high" if n.level >= Level.II else "normal", "Topic": topic(n.key)}
        payload = render.push_payload(n).decode()
        status, error = await run_blocking(
            self._pool, lambda: self._push(dict(sub), payload, headers), self._timeout_s + 1.0, "web push"
        )
        if status in GONE and self._on_gone is not None:
            self._on_gone(sub_id)
        if error is not None:
            message = scrub(scrub(error.message, url), str(sub.get("endpoint", "")))
            raise DeliveryError(message, error.retryable, error.retry_after_s)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _push(self, sub: dict[str, Any], payload: str, headers: dict[str, str]) -> tuple[int, DeliveryError | None]:
        try:
            self._webpush.webpush(
                subscription_info=sub,
                data=payload,
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self._subject},  # a fresh dict: pywebpush adds aud and exp to it
                content_encoding="aes128gcm",
                ttl=self._ttl_s,
                timeout=self._timeout_s,
                headers=dict(headers),
            )
        except self._webpush.WebPushException as e:
            status: int | None = e.status_code
            if status is None:
                return 0, DeliveryError(f"web push refused the subscription: {e.message}", retryable=False)
            if status in GONE:
                return status, DeliveryError(f"subscription gone: push service answered HTTP {status}", False)
            wait = retry_after_seconds(e.retry_after)
            return status, DeliveryError(f"push service answered HTTP {status}", http_retryable(status), wait)
        except self._requests.RequestException as e:
            return 0, DeliveryError(f"connection failed: {type(e).__name__}", retryable=True)
        except (ValueError, TypeError) as e:  # keys that are not base64 or not a P-256 point
            return 0, DeliveryError(f"invalid subscription keys: {e}", retryable=False)
        return 201, None


def topic(key: str) -> str:
    """RFC 8030 Topic (<= 32 base64url characters): a newer message about the same alert replaces a pending one.

    >>> len(topic("alert-S03-capacity")), topic("a") == topic("a")
    (32, True)
    """
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _check_subscription(sub: Mapping[str, Any]) -> str:
    endpoint = sub.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        return "'endpoint' must be the http(s) URL the browser gave"
    keys = sub.get("keys")
    if not isinstance(keys, Mapping) or not all(isinstance(keys.get(k), str) for k in ("p256dh", "auth")):
        return "'keys' must hold the browser's 'p256dh' and 'auth' strings"
    return ""


def load_vapid(key: str) -> Any:
    py_vapid = _import("py_vapid")
    try:
        if os.path.isfile(key):
            with open(key, encoding="utf-8") as f:
                text = f.read()
        else:
            text = key
        if "-----BEGIN" in text:
            return py_vapid.Vapid.from_pem(text.encode())
        return py_vapid.Vapid.from_string(text.strip())
    except (ValueError, TypeError, OSError, py_vapid.VapidException) as e:
        raise ValueError(
            "vapid_private_key: could not read a P-256 private key (give the base64url key from "
            f"`vapid --gen`, PEM text, or a PEM file path): {type(e).__name__}"
        ) from None
