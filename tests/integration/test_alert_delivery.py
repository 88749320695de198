"""Alert delivery on real components: Mosquitto, `crowdflow serve` as its own process with the shipped Lujiazui duty
roster pointed at a local HTTP receiver, 40 simulated minutes of New Year's Eve published at full speed.

Every officer's endpoint fails once with 503 (transient) and then accepts; the command centre's webhook answers
400 (permanent). Then the service is stopped and started again on the same data directory, and the next 10
minutes are published: nothing already delivered is sent again.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.roster import default_roster_path, load_roster
from domain.loader import load_site
from sim.publisher import run_scenario
from sim.scenario import load_scenario
from tests.alerts.receiver import Receiver
from tests.servers import Server, ServiceProcess, free_port

REPO = Path(__file__).parent.parent.parent
ALERT_IN_URL = re.compile(r"/officer#alert=([0-9a-f]+)")


def _get(url: str, token: str | None = "t-delivery") -> Any:  # the API needs a token: the operator's
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def _roster_for(receiver: Receiver, path: Path) -> list[str]:
    text = default_roster_path().read_text(encoding="utf-8")
    text = text.replace("ntfy://127.0.0.1:8090/crowdflow-", f"json://127.0.0.1:{receiver.port}/p/")
    text = text.replace("json://127.0.0.1:8091/crowdflow/command", f"json://127.0.0.1:{receiver.port}/command")
    path.write_text(text, encoding="utf-8")
    people = list(load_roster(path, load_site()).people)
    for person in people:
        receiver.script(f"/p/{person}", 503, 200)  # each officer's phone service hiccups once
    receiver.script("/command", 400)  # the command centre's webhook is misconfigured: permanent
    return people


def _publish(mosquitto: Server, start: str, minutes: int, out: Path) -> int:
    summary = run_scenario(
        load_site(), load_scenario("nye"), host="127.0.0.1", port=mosquitto.port, speed=0, out_dir=out,
        start=start, duration_s=minutes * 60, progress=False,
    )  # fmt: skip
    return summary.messages


def _settle(base: str, expected: int) -> None:
    """Until the service has taken every message, then two ticks more."""
    deadline = time.monotonic() + 120
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = _get(f"{base}/healthz")["pipeline"]["ingest"]["received"]
        if got != last:
            last, stable_since = got, time.monotonic()
        elif got >= expected or time.monotonic() - stable_since > 5:
            break
        time.sleep(0.5)
    time.sleep(2.0)


def _delivered(receiver: Receiver) -> list[tuple[str, str, str]]:
    """(path, title, alert id) of every request the receiver got (accepted or not), in arrival order."""
    out = []
    for req in receiver.requests:
        body = req.json()
        m = ALERT_IN_URL.search(body.get("message", ""))
        out.append((req.path, body.get("title", ""), m.group(1) if m else ""))
    return out


@pytest.mark.integration
def test_delivery_retries_records_and_survives_a_restart(tmp_path: Path, mosquitto: Server, receiver: Receiver) -> None:
    roster = tmp_path / "roster.toml"
    _roster_for(receiver, roster)
    port = free_port()
    cfg = tmp_path / "crowdflow.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nclient_id = "cf-delivery"\n'
        f'[service]\nclock = "sim"\ndata_dir = "{tmp_path / "var"}"\ntick_s = 5\n'
        f'[dashboard]\nport = {port}\npush_port = {free_port()}\napi_token = "t-delivery"\n'
        f'[alerts]\nroster = "{roster}"\nmax_attempts = 3\n'
    )
    serve = ServiceProcess(cfg, port, tmp_path / "service.log")
    serve.start()
    try:
        sent = _publish(mosquitto, "23:00", 40, tmp_path / "truth1")
        _settle(serve.base, sent)
        receiver.wait_until(lambda r: len(r.requests) > 0, timeout_s=20)
        time.sleep(3.0)  # retries after a 1 s backoff
        alerts = _get(f"{serve.base}/api/alerts?state=all&limit=1000")
        assert alerts, "the NYE build-up raised no alert"
        riverside = [a for a in alerts if a["zone"].startswith("riverside-")]
        assert any(a["incident"] for a in riverside), "adjacent riverside segments should form an incident"

        # Every notification is in the journal with its attempts: officers' 503 retried and delivered on the
        # second try; the command webhook's 400 tried once, not retried.
        # An incident's notification is listed under each member alert: count each attempt once.
        seen = {
            (x["notification_id"], x["person"], x["channel"], x["attempt"]): x
            for a in alerts
            for d in _get(f"{serve.base}/api/alerts/{a['id']}/deliveries", token="t-delivery")
            for x in d["attempts"]
        }
        attempts = list(seen.values())
        assert attempts, "no delivery attempt recorded"
        assert any(not x["ok"] and x["retryable"] and x["attempt"] == 1 for x in attempts), "no transient failure"
        assert any(x["ok"] and x["attempt"] == 2 for x in attempts), "no delivery on the second try"
        permanent = [x for x in attempts if not x["ok"] and not x["retryable"]]
        assert permanent, "the command webhook's 400 was not recorded as a permanent failure"
        assert all(x["attempt"] == 1 for x in permanent), f"a permanent failure was retried: {permanent[:3]}"
        assert receiver.hits("/command"), "the command centre was never told (escalation or incident routing)"

        # One message per situation: far fewer messages than alert changes on the riverside.
        before = _delivered(receiver)
        raised_before = {aid for _, title, aid in before if "· NEW" in title}
        assert raised_before

        assert serve.stop() == 0, serve.log_tail()  # a clean shutdown: flushed and saved
        count_at_stop = len(receiver.requests)
        serve.start()
        time.sleep(3.0)
        assert len(receiver.requests) == count_at_stop, "the restart re-sent notifications"
        open_after = _get(f"{serve.base}/api/alerts")
        assert open_after, "open alerts were not resumed after the restart"

        sent = _publish(mosquitto, "23:40", 10, tmp_path / "truth2")
        _settle(serve.base, sent)
        after = _delivered(receiver)[count_at_stop:]
        again = [(path, title) for path, title, aid in after if "· NEW" in title and aid in raised_before]
        assert not again, f"already-raised alerts were announced as new after the restart: {again[:5]}"
    finally:
        serve.stop()
