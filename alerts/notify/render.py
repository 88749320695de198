"""Formats a Notification for a channel: plain text, Markdown, or a Web Push payload.

The alert manager writes the title and body; this module only lays them out and adds the acknowledge link.
"""

from __future__ import annotations

import json
from typing import Any

from alerts.model import Notification

# Push services accept about 4 KB of encrypted payload; the JSON plus encryption overhead must fit.
PUSH_PAYLOAD_MAX_BYTES = 3000


def text(n: Notification) -> str:
    """The body as written, then the acknowledge link when the service knows its address.

    >>> print(text(_example()))
    Occupancy 92% of capacity.
    <BLANKLINE>
    Acknowledge: https://duty.example.cn/a/A1
    """
    return f"{n.body}\n\nAcknowledge: {n.url}" if n.url else n.body


def markdown(n: Notification) -> str:
    """Markdown for channels that render it (DingTalk, ntfy with markdown on): body, then a link.

    >>> print(markdown(_example()))
    Occupancy 92% of capacity.
    <BLANKLINE>
    [Acknowledge](https://duty.example.cn/a/A1)
    """
    return f"{n.body}\n\n[Acknowledge]({n.url})" if n.url else n.body


def push_payload(n: Notification) -> bytes:
    """JSON for a Web Push service worker: title, body, where to acknowledge, and what it is about.

    The body is shortened (with an ellipsis) so the encrypted message stays under the push services' limit.

    >>> json.loads(push_payload(_example()))["title"]
    'I red · Riverside S03'
    """
    doc: dict[str, Any] = {
        "id": n.id,
        "key": n.key,
        "kind": n.kind,
        "level": int(n.level),
        "colour": n.level.colour,
        "zones": list(n.zones),
        "alert_ids": list(n.alert_ids),
        "title": n.title,
        "body": n.body,
        "url": n.url,
    }
    raw = json.dumps(doc, ensure_ascii=False).encode()
    if len(raw) <= PUSH_PAYLOAD_MAX_BYTES:
        return raw
    # Cut the body by what is over (in bytes; Chinese text is 3 bytes a character), then re-check.
    body = n.body
    while len(raw) > PUSH_PAYLOAD_MAX_BYTES and body:
        over = len(raw) - PUSH_PAYLOAD_MAX_BYTES
        body = body[: max(0, len(body) - max(1, over // 3) - 1)]
        doc["body"] = body + "…"
        raw = json.dumps(doc, ensure_ascii=False).encode()
    return raw


def _example() -> Notification:
    from domain.levels import Level

    return Notification(
        id="N1", key="A1", alert_ids=("A1",), zones=("S03",), kind="raised", level=Level.I, step=0,
        title="I red · Riverside S03", body="Occupancy 92% of capacity.", reason="new alert",
        created_at=0.0, recipients=(), url="https://duty.example.cn/a/A1",
    )  # fmt: skip
