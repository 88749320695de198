"""Fault: the broker restarts in the middle of a surge.

Real Mosquitto (persistence on: sessions and queued QoS 1 messages are written at its stop and read back at
its start) and `crowdflow serve` as a child process. Six plazas' cameras and counters publish at a steady
pace through the simulator's reconnecting paho sink while every zone fills from 30% to 97% of capacity; the
broker is stopped a third of the way in and started again on the same port two seconds later. The sink
buffers what it cannot send and resends after reconnecting; the service reconnects and subscribes again.

The same with the broker crashing (SIGKILL) instead: it comes back from its last autosave, which holds the
service's session; what it had acknowledged to the feed and not yet passed on would be lost (none was, here).

Expected: every message the broker acknowledged is accepted exactly once (redeliveries at QoS 1 are caught by
ingest's per-stream sequence numbers and counted as duplicates, apart); no other rejection, no sequence
number given up; every zone's I red alert, raised from readings sent while the broker was away, notified
once to its officer.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.faults import harness as h

ZONES = 6


def run(
    workdir: Path, *, rounds: int = 60, every_s: float = 0.1, down_s: float = 2.0, crash: bool = False
) -> h.FaultResult:
    """crash: SIGKILL instead of SIGTERM. Mosquitto then comes back with what it last autosaved (the shipped
    config saves every 60 s; here a SIGUSR1 saves once the service and the feed are connected, as an autosave
    would have long before in a deployment): the sessions, and the messages queued at that moment. What it
    had acknowledged to the feed and not yet passed on when it died is gone: counted as lost."""
    res = h.FaultResult("broker crash (SIGKILL)" if crash else "broker restart")
    zones = h.zone_ids(ZONES)
    with h.one_receiver_run(workdir, ZONES, client_id="cf-faults-broker") as (rx, mosq, svc):
        sensors = h.Sensors(zones, mosq.port)
        pacer = h.Pacer(sensors, share=lambda k: 0.3 + 0.67 * k / (rounds - 1), rounds=rounds, every_s=every_s)
        pacer.start()
        if crash:  # the last autosave, with the service's session (subscription) in it
            h.wait_for(lambda: pacer.done_rounds >= 2, 30, "the surge started")
            os.kill(mosq.proc.pid, signal.SIGUSR1)
        h.wait_for(lambda: pacer.done_rounds >= rounds // 3, 30, "a third of the surge published")
        if crash:
            mosq.proc.kill()
            mosq.proc.wait(10)
        else:
            mosq.stop()  # SIGTERM: Mosquitto saves its sessions and their queued messages, then exits
        res.figures["rounds_before_stop"] = str(pacer.done_rounds)
        sent_at_stop = sensors.sent
        time.sleep(down_s)
        # What the feed handed to its client while the broker was away: buffered, sent on reconnect.
        res.figures["published_while_down"] = str(sensors.sent - sent_at_stop)
        mosq.start()
        pacer.join(120)
        res.check(sensors.drain(60), f"the feed could not deliver {sensors.sink.pending} messages")
        res.sent = sensors.sink.acked
        ingest = res.take(svc, res.sent)
        sub = svc.health().get("subscriber", {})
        res.figures["service_reconnects"] = str(sub.get("reconnects"))
        res.figures["feed_reconnects"] = str(sensors.sink.connects - 1)
        res.check(int(sub.get("reconnects", 0)) >= 1, f"the service never saw the broker go: {sub}")
        res.check(svc.health().get("broker") == "connected", "the service is not connected after the restart")
        res.check(int(sub.get("dropped", 0)) == 0, f"the subscriber dropped messages: {sub}")
        res.check(int(ingest.get("missing", 0)) == 0, f"ingest gave up on {ingest.get('missing')} seq numbers")

        # Every zone went red on readings partly queued while the broker was down: one NEW each.
        with_deadline = time.monotonic() + 20
        while time.monotonic() < with_deadline and len(h.raised(h.told(rx), "/a/")) < ZONES:
            time.sleep(0.25)
        res.tally_alerts(h.told(rx), zones)
        sensors.close()
    return res.checked()


def test_broker_restart_mid_surge_loses_nothing(tmp_path: Path) -> None:
    h.assert_passed(run(tmp_path))


def test_broker_crash_mid_surge_loses_nothing_the_service_was_sent(tmp_path: Path) -> None:
    h.assert_passed(run(tmp_path, crash=True))
