"""Keep secrets out of log lines: query-string credentials, bearer tokens, and Authorization headers.

The app never logs a token itself; this filter is for what others log about requests: uvicorn's access log
("GET /api/me?token=... 400") and its WebSocket lines, which print the request target as sent. A token put
in a URL by mistake is refused (dashboard/guard.py) and, with this filter, not written down either.

`install()` adds the filter to uvicorn's loggers (idempotent); create_app calls it.

>>> redact("GET /api/me?zone=a&token=s3cret HTTP/1.1")
'GET /api/me?zone=a&token=[redacted] HTTP/1.1'
>>> redact("Authorization: Bearer abc.def")
'Authorization: Bearer [redacted]'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from dashboard.guard import TOKEN_PARAMS

REDACTED = "[redacted]"
LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "fastapi", "dashboard")

_params = "|".join(sorted(re.escape(p) for p in TOKEN_PARAMS))
_QUERY = re.compile(rf"([?&;](?:{_params})=)[^&;\s\"']*", re.IGNORECASE)
_BEARER = re.compile(r"(\bbearer\s+)[^\s\"',;]+", re.IGNORECASE)
_ENCODED_QUERY = re.compile(rf"((?:%3F|%26)(?:{_params})(?:=|%3D))[^&;\s\"'%]*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with credential values in query strings and bearer tokens replaced by [redacted]."""
    text = _QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _ENCODED_QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, arguments included, with secrets redacted. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments are redacted in place, not merged into the message: uvicorn's access formatter unpacks them.
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def install(names: tuple[str, ...] = LOGGERS) -> None:
    """Add the filter to each named logger and to its handlers, once (handlers see propagated records)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
        for handler in logger.handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())
