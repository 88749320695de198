"""Request size limits and rate limits for the API.

- `BodyLimit`: an ASGI middleware answering 413 to a request whose body is over `max_bytes`: at once when
  Content-Length says so, and, for a chunked body, as soon as the bytes read pass the bound (the body is
  never read whole).
- `RateLimiter`: token buckets per key (a principal, a client address), bounded in number; `take` says
  how long to wait when the bucket is empty. The write endpoints take one token from the caller's address
  bucket (before authentication, so guessing tokens is slowed too) and one from the principal's bucket;
  an empty bucket is a 429 with Retry-After (see dashboard/app.py and dashboard/access.py).

>>> clock = [0.0]
>>> limiter = RateLimiter(RateLimit(burst=2, per_s=1.0), now=lambda: clock[0])
>>> limiter.take("ann"), limiter.take("ann"), limiter.take("ann") > 0, limiter.take("bob")
(0.0, 0.0, True, 0.0)
>>> clock[0] = 1.0
>>> limiter.take("ann")
0.0
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024  # the largest legitimate body, a planned event over 500 zones, is about 55 KB
MAX_KEYS = 10_000  # buckets kept; the least recently used goes first (a flood of addresses stays bounded)


class RateLimit(msgspec.Struct, frozen=True):
    """`burst` calls at once, then `per_s` calls a second on average."""

    burst: int
    per_s: float

    def __post_init__(self) -> None:
        if self.burst < 1 or not (self.per_s > 0 and math.isfinite(self.per_s)):
            raise ValueError(f"a rate limit needs burst >= 1 and a positive per_s, got {self.burst}, {self.per_s}")


PER_PRINCIPAL = RateLimit(burst=30, per_s=1.0)  # a person acking a wave of alerts; a script looping is stopped
PER_ADDRESS = RateLimit(burst=120, per_s=4.0)  # several phones behind one NAT or the command centre's proxy
FAILED_SIGN_INS = RateLimit(burst=20, per_s=0.2)  # unknown tokens per address: 20, then one every 5 s


class RateLimiter:
    """Token buckets per key. Not thread-safe: used on the app's event loop only."""

    def __init__(self, limit: RateLimit, *, now: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self.limit = limit
        self._now = now
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self.refused = 0

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token again (0.0: it has one now), taking nothing."""
        found = self._buckets.get(key)
        if found is None:
            return 0.0
        tokens, at = found
        tokens = min(float(self.limit.burst), tokens + max(0.0, self._now() - at) * self.limit.per_s)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.limit.per_s

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 if there was one, else the seconds until there will be one."""
        now = self._now()
        tokens, at = self._buckets.pop(key, (float(self.limit.burst), now))
        tokens = min(float(self.limit.burst), tokens + max(0.0, now - at) * self.limit.per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.limit.per_s
            self.refused += 1
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """Whole seconds for the Retry-After header, at least 1."""
    return str(max(1, math.ceil(wait_s)))


async def _send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = msgspec.json.encode({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from `receive`: FastAPI passes an HTTPException from reading the body on to its handler (413)."""


class BodyLimit:
    """413 for a request body over `max_bytes`, before it is read whole."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body over {self.max_bytes} bytes: send less (one alert, silence or event per request)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, self._detail())
                    return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, self._detail())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:  # a route that is not FastAPI's read the body: answer here
                await _send_json(send, 413, self._detail())


def client_address(scope: Scope) -> str:
    client: Any = scope.get("client")
    return str(client[0]) if client else "unknown"
