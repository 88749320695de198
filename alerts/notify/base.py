"""What a delivery channel is, the one error it raises, and how a channel URL is shown without its secrets.

A channel sends one Notification to one Recipient over one URL. It says whether a failure is worth retrying
(`DeliveryError.retryable`); the dispatcher decides when. Channel URLs carry tokens and passwords (a DingTalk
robot token sits where a host would be), so records and log lines only ever show `redact(url)`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from alerts.model import Notification, Recipient

T = TypeVar("T")


class DeliveryError(Exception):
    """A channel could not deliver. `retryable`: transient (timeout, refused, HTTP 5xx/429), worth another try.

    `retry_after_s`: the far end said when to come back (HTTP Retry-After); the dispatcher waits at least that
    long, up to its longest backoff.

    >>> e = DeliveryError("HTTP 503", retryable=True)
    >>> (str(e), e.retryable, e.retry_after_s)
    ('HTTP 503', True, None)
    """

    def __init__(self, message: str, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@runtime_checkable
class Channel(Protocol):
    """One way of reaching a person. `send` returns when the far end accepted the message, else raises."""

    def handles(self, url: str) -> bool:
        """Whether this channel understands the URL (by its scheme); cheap, no I/O."""
        ...

    async def send(self, url: str, n: Notification, r: Recipient) -> None:
        """Deliver `n` to `r` over `url`; raise DeliveryError saying whether a retry could help."""
        ...


# Schemes whose host part is a real host. For every other scheme Apprise may put a secret where a host
# would be (dingtalk://{token}, wecombot://{key}, feishu://{token}, tgram://{bot_token}), so only the
# scheme is shown.
HOST_SCHEMES = frozenset(
    {
        "json", "jsons", "xml", "xmls", "form", "forms",
        "ntfy", "ntfys", "gotify", "gotifys", "mailto", "mailtos",
        "http", "https", "mqtt", "mqtts", "apprise", "apprises",
    }
)  # fmt: skip
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case, or "" when it has none.

    >>> scheme_of("NTFY://127.0.0.1/alerts"), scheme_of("webpush:abc"), scheme_of("no scheme")
    ('ntfy', 'webpush', '')
    """
    head, sep, _ = url.partition(":")
    return head.lower() if sep and _SCHEME.match(head) else ""


def redact(url: str) -> str:
    """Scheme and host (and port) only: never a user, password, token, topic, path or query.

    >>> redact("json://user:secret@127.0.0.1:8080/hook?token=x")
    'json://127.0.0.1:8080'
    >>> redact("dingtalk://0123456789abcdef/")  # the token is in the host position
    'dingtalk://***'
    >>> redact("ntfy://my-secret-topic")  # ntfy.sh: the "host" is the topic
    'ntfy://***'
    >>> redact("ntfy://ntfy.example.cn/alerts"), redact("webpush:sub-42"), redact("not a url")
    ('ntfy://ntfy.example.cn', 'webpush', '(invalid url)')
    """
    scheme = scheme_of(url)
    if not scheme:
        return "(invalid url)"
    if scheme == "webpush":
        return "webpush"
    if scheme not in HOST_SCHEMES:
        return f"{scheme}://***"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # e.g. a port that is not a number
        return f"{scheme}://***"
    if not host or (scheme in ("ntfy", "ntfys") and not parts.path.strip("/")):
        return f"{scheme}://***"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + (f":{port}" if port else "")


def scrub(text: str, url: str) -> str:
    """Remove from `text` every secret-bearing piece of `url`, for error texts quoted from a library.

    >>> scrub("failed posting to dingtalk://abcdef123/ (token abcdef123)", "dingtalk://abcdef123/")
    'failed posting to dingtalk://*** (token ***)'
    """
    out = text.replace(url, redact(url)) if url else text
    for piece in sorted(_secret_pieces(url), key=len, reverse=True):
        out = out.replace(piece, "***")
    return out


def _secret_pieces(url: str) -> set[str]:
    pieces: set[str] = set()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return {url} if url else set()
    if parts.username:
        pieces.add(parts.username)
    if parts.password:
        pieces.add(parts.password)
    if host and redact(url).endswith("***"):
        pieces.add(host)
    pieces.update(seg for seg in parts.path.split("/") if seg)
    pieces.update(v for _, v in parse_qsl(parts.query) if v)
    if parts.fragment:
        pieces.add(parts.fragment)
    if scheme_of(url) == "webpush":
        pieces.add(url.partition(":")[2])
    # Short pieces ("a", "v1") are not secrets and replacing them would garble the text.
    return {p for p in pieces if len(p) >= 4}


# Request Timeout, Too Early, Too Many Requests: the same request may well succeed later.
RETRYABLE_4XX = frozenset({408, 425, 429})


def http_retryable(status: int) -> bool:
    """Whether an HTTP error status is transient: 5xx and 408/425/429 yes; other 4xx (and 3xx) no.

    >>> [http_retryable(s) for s in (503, 429, 400, 404, 410)]
    [True, True, False, False, False]
    """
    return status >= 500 or status in RETRYABLE_4XX


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header in its delay form; None for a date, garbage or nothing.

    >>> retry_after_seconds("120"), retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), retry_after_seconds(None)
    (120.0, None, None)
    """
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


async def run_blocking(executor: Executor, fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run a blocking call on `executor` without blocking the loop; a retryable DeliveryError after `timeout_s`.

    The thread itself cannot be stopped: the library's own socket timeouts end it; the loop does not wait.
    """
    fut = asyncio.get_running_loop().run_in_executor(executor, fn)
    try:
        async with asyncio.timeout(timeout_s):
            return await fut
    except TimeoutError:
        raise DeliveryError(f"{what} timed out after {timeout_s:g} s", retryable=True) from None
