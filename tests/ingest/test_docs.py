"""docs/messages.md stays true: its examples decode, and it lists every rejection reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

from domain.messages import MESSAGE_TYPES
from ingest.decoder import Decoder
from ingest.mqtt import deadletter_payload
from ingest.rejection import REASONS, Rejection
from tests.ingest.helpers import site_with_area, topic

DOC = (Path(__file__).parents[2] / "docs" / "messages.md").read_text(encoding="utf-8")
EXAMPLES = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC, re.S)]


def test_every_kind_has_an_example_that_decodes() -> None:
    dec = Decoder(site_with_area())
    kinds_seen = set()
    for ex in EXAMPLES:
        if "reason" in ex:
            continue
        kind = next(
            k for k, typ in MESSAGE_TYPES.items() if set(ex) - {"v"} <= set(typ.__struct_encode_fields__)
        )
        msg = dec.decode(topic(ex["sensor"], kind), json.dumps(ex).encode())
        assert not isinstance(msg, Rejection), (ex, msg)
        kinds_seen.add(kind)
    assert kinds_seen == set(MESSAGE_TYPES)


def test_deadletter_example_has_the_published_fields() -> None:
    [dl] = [ex for ex in EXAMPLES if "reason" in ex]
    rej = Rejection(reason="schema", detail="", topic="", payload="")
    assert set(dl) == set(json.loads(deadletter_payload(rej)))


def test_every_reason_is_documented() -> None:
    for reason in REASONS:
        assert f"| `{reason}` |" in DOC, reason
