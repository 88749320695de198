"""Push channels through Apprise URLs: DingTalk, WeCom, Feishu, ntfy, Gotify, email, JSON webhooks, ...

Apprise is blocking (requests, smtplib), so each send runs on this channel's own small thread pool, with a
deadline: a hanging server never blocks the event loop, and never starves the loop's default executor
(which also resolves host names for everything else in the service).

Telling a transient failure from a permanent one. Apprise 2 returns, per call, an `AppriseResult` with each
service's status (SUCCESS / FAILURE / TIMEOUT) and the log lines that service wrote during *this* call
(kept per call, so concurrent sends in other threads do not mix in, unlike a `LogCapture` on the shared
"apprise" logger). Apprise's HTTP plugins all report a rejected request as "...error=<HTTP status>."; ntfy
reports its own five-digit code whose first three digits are the HTTP status (42901 -> 429). So:

- the URL does not parse, or names a service Apprise cannot load: permanent, before any I/O;
- TIMEOUT, or "connection error": retryable;
- error=429 (also 408, 425) or error=5xx: retryable; any other error=4xx (and 3xx, a redirect Apprise
  does not follow): permanent;
- a failure with no status (a vendor's own error code in a 200 answer, say): retryable. Losing a crowd
  alert costs more than a few extra tries, and the dispatcher caps the tries.

tests/alerts/test_notify_apprise.py checks this against a real local server for json://, ntfy:// and
gotify://, so a change in Apprise's wording fails a test instead of silently turning into retries.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, cast

import apprise

from alerts.model import Notification, Recipient
from alerts.notify import render
from alerts.notify.base import DeliveryError, http_retryable, redact, run_blocking, scheme_of, scrub
from domain.levels import Level

if not hasattr(apprise, "AppriseResult"):  # Apprise 1.x: notify() says only True/False
    raise ImportError(
        "alerts.notify needs apprise>=2 (per-service results to tell transient from permanent failures); "
        f"found {getattr(apprise, '__version__', 'an older version')}: run `pip install 'apprise>=2'`"
    )

log = logging.getLogger(__name__)

_HTTP_STATUS = re.compile(r"\berror=(\d{3})(?:\d{2})?\b")
_CONNECTION = re.compile(r"connection error|socket exception|timed out|did not finish", re.IGNORECASE)

BodyFormat = Literal["text", "markdown"]


class AppriseChannel:
    """Sends through any Apprise URL whose service Apprise can load here.

    `timeout_s` bounds one send (Apprise's own call deadline, and ours around the thread); keep it at or under
    the Dispatcher's `timeout_s`, so a thread is free again by the time the dispatcher gives up on it.
    `max_workers` bounds the threads; keep it at or above the Dispatcher's `concurrency`, so a send never
    waits for a thread behind hanging ones (that wait would count against its timeout).
    """

    def __init__(
        self,
        *,
        timeout_s: float = 8.0,
        max_workers: int = 32,
        body_format: BodyFormat = "text",
        app_id: str = "crowdflow",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"AppriseChannel timeout_s must be > 0 seconds, got {timeout_s}")
        if max_workers < 1:
            raise ValueError(f"AppriseChannel max_workers must be >= 1, got {max_workers}")
        if body_format not in ("text", "markdown"):
            raise ValueError(f"AppriseChannel body_format must be 'text' or 'markdown', got {body_format!r}")
        self._timeout_s = timeout_s
        self._body_format = body_format
        self._asset = apprise.AppriseAsset(app_id=app_id, app_desc="crowd-flow alerts")
        self._schemes = usable_schemes()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="apprise")

    def handles(self, url: str) -> bool:
        return scheme_of(url) in self._schemes and scheme_of(url) != "webpush"

    async def send(self, url: str, n: Notification, r: Recipient) -> None:
        error = await run_blocking(
            self._pool, lambda: self._send_blocking(url, n), self._timeout_s + 1.0, f"apprise {redact(url)}"
        )
        if error is not None:
            raise error

    def close(self) -> None:
        """Stop taking sends; threads still in a request end with their socket timeout."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _send_blocking(self, url: str, n: Notification) -> DeliveryError | None:
        plugin = apprise.Apprise.instantiate(url, asset=self._asset)
        if plugin is None:
            return DeliveryError(
                f"Apprise cannot use this {scheme_of(url)}:// URL (missing or malformed parts, see the "
                f"Apprise wiki page for {scheme_of(url)}); fix the person's channel in the roster",
                retryable=False,
            )
        ap = apprise.Apprise(asset=self._asset)
        ap.add(plugin)
        body = render.markdown(n) if self._body_format == "markdown" else render.text(n)
        result = ap.notify(
            body=body,
            title=n.title,
            notify_type=notify_type(n),
            body_format=apprise.NotifyFormat.MARKDOWN if self._body_format == "markdown" else apprise.NotifyFormat.TEXT,
            timeout=self._timeout_s,
        )
        return classify(result, url)


@functools.cache
def usable_schemes() -> frozenset[str]:
    """Schemes of the Apprise services whose dependencies are installed here (loads Apprise's plugins once)."""
    with warnings.catch_warnings():
        # Apprise's e-mail plugin imports the stdlib's imghdr, deprecated in 3.11: not ours to fix, and with
        # warnings as errors (our tests) it would stop every channel from loading.
        warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
        manager: Any = cast(Any, apprise.NotificationManager)()  # the plugin manager is not annotated
        return frozenset(str(s).lower() for s in manager.schemas(include_disabled=False))


def notify_type(n: Notification) -> apprise.NotifyType:
    """Apprise's colour/icon class: red level failure, orange/yellow warning, blue info, resolved success."""
    if n.kind == "resolved":
        return apprise.NotifyType.SUCCESS
    if n.level >= Level.I:
        return apprise.NotifyType.FAILURE
    if n.level >= Level.III:
        return apprise.NotifyType.WARNING
    return apprise.NotifyType.INFO


def classify(result: apprise.AppriseResult, url: str) -> DeliveryError | None:
    """None when delivered, else a DeliveryError saying why and whether a retry could help."""
    if result:
        return None
    lines = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
    reason = scrub("; ".join(lines), url) or f"Apprise reported {result.status.name} without a reason"
    if result.status == apprise.AppriseResultStatus.TIMEOUT:
        return DeliveryError(f"timed out: {reason}", retryable=True)
    for line in lines:
        if m := _HTTP_STATUS.search(line):
            status = int(m.group(1))
            return DeliveryError(f"HTTP {status}: {reason}", retryable=http_retryable(status))
    if any(_CONNECTION.search(line) for line in lines):
        return DeliveryError(f"connection failed: {reason}", retryable=True)
    return DeliveryError(f"unclassified failure: {reason}", retryable=True)
