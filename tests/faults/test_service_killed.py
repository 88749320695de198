"""Fault: the service is SIGKILLed during a surge and started again.

Real Mosquitto and `crowdflow serve` with a periodic state snapshot every second (service.snapshot_s).
Phase 1: four plazas, two of them red (97% of capacity): their alerts are raised and notified. Once the
service has taken everything and written a snapshot, it is frozen (SIGSTOP) while phase 2 is published (the
broker hands part of it to the frozen service's socket, unacknowledged), then SIGKILLed; phase 3 is published
while it is down, and in phases 2-3 a third plaza turns red. The service is started again on the same data
directory and the same MQTT client id.

Expected:
- the snapshot was written before the kill (periodically, not only at a clean stop);
- every message published after the freeze is accepted exactly once by the new run (the persistent session
  kept them; the in-flight ones are sent again), none lost, none counted twice;
- each zone's arrivals today equal every person the gates counted in, in all three phases: the first
  phase's count came back from the snapshot and nothing was counted twice;
- the open alerts resume from the journal under the same ids; nothing already delivered is delivered again;
  the third zone's alert, raised from data sent while the service was down, is notified once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.faults import harness as h

ZONES = 4
RED_FIRST = ("z00", "z01")
RED_WHILE_DOWN = "z02"


def run(workdir: Path, *, rounds: int = 20, every_s: float = 0.05, snapshot_s: float = 1.0) -> h.FaultResult:
    res = h.FaultResult("service SIGKILL")
    zones = h.zone_ids(ZONES)
    state = workdir / "var" / "state.json"
    with h.one_receiver_run(workdir, ZONES, client_id="cf-faults-kill", snapshot_s=snapshot_s) as (rx, mosq, svc):
        sensors = h.Sensors(zones, mosq.port)

        def phase1(z: str) -> float:
            return 0.97 if z in RED_FIRST else 0.4

        def phase2(z: str) -> float:
            return 0.97 if z in (*RED_FIRST, RED_WHILE_DOWN) else 0.4

        for k in range(rounds):
            sensors.round(phase1, jitter=k)
            time.sleep(every_s)
        res.check(sensors.drain(30), "phase 1 not acknowledged by the broker")
        n1 = sensors.sink.acked
        res.take(svc, n1)
        h.wait_for(lambda: h.red_notified(h.told(rx), RED_FIRST) == len(RED_FIRST), 20, "phase 1's red alerts notified")
        written = int(svc.pipeline().get("snapshots", {}).get("written", 0))
        try:  # a snapshot that holds all of phase 1
            h.wait_for(
                lambda: int(svc.pipeline().get("snapshots", {}).get("written", 0)) >= written + 1, 10,
                "a periodic snapshot after phase 1 (service.snapshot_s = 1)",
            )  # fmt: skip
        except TimeoutError as e:
            res.problems.append(f"{e}: /healthz pipeline.snapshots = {svc.pipeline().get('snapshots')}")
        arrivals_phase1 = dict(sensors.arrivals)
        open_before = {a["id"]: a["zone"] for a in svc.alerts("open")}
        told_before = h.told(rx)

        svc.pause()  # frozen: the broker's deliveries sit unread and unacknowledged
        for k in range(rounds):
            sensors.round(phase2, jitter=rounds + k)
        res.check(sensors.drain(30), "phase 2 not acknowledged by the broker")
        svc.kill()
        res.figures["snapshot_on_disk_at_kill"] = str(state.exists())
        res.check(state.exists(), f"no state snapshot on disk when the service was killed ({state})")
        if state.exists():
            snap = json.loads(state.read_text())
            res.check("engine" in snap, f"the snapshot has no engine state: {list(snap)[:5]}")
        for k in range(rounds):
            sensors.round(phase2, jitter=2 * rounds + k)
        res.check(sensors.drain(30), "phase 3 not acknowledged by the broker")
        res.sent = sensors.sink.acked
        res.figures["published_after_freeze"] = str(res.sent - n1)

        svc.start()
        res.take(svc, res.sent - n1)

        zs = svc.zones()
        wrong = {
            z: (zs[z].get("arrivals_today"), sensors.arrivals_today(z))
            for z in zones
            if zs[z].get("arrivals_today") != sensors.arrivals_today(z)
        }
        res.check(
            not wrong,
            "arrivals today after the restart differ from what the gates counted (service, gates): "
            f"{wrong}; the gates counted {arrivals_phase1} of them before the kill (in the snapshot)",
        )
        open_after = {a["id"]: a["zone"] for a in svc.alerts("open")}
        lost_alerts = {i: z for i, z in open_before.items() if i not in open_after}
        res.check(not lost_alerts, f"open alerts not resumed after the restart: {lost_alerts}")

        h.wait_for(lambda: any(t.path == f"/a/{RED_WHILE_DOWN}" for t in h.told(rx)), 20, "the new red zone notified")
        time.sleep(2.0)  # anything sent again after the restart would be here by now
        items = h.told(rx)
        res.tally_alerts(items, (*RED_FIRST, RED_WHILE_DOWN))
        # A level change of a resumed alert is news; announcing it again, or repeating a message, is not.
        earlier = {(t.path, t.title, t.message) for t in told_before}
        again = [
            t for t in items[len(told_before) :]
            if (t.path, t.title, t.message) in earlier or (t.title.endswith("· NEW") and t.alert_id in open_before)
        ]  # fmt: skip
        res.check(not again, f"notifications sent again after the restart: {again[:3]}")
        res.figures["notifications_after_restart"] = str(len(items) - len(told_before))
        sensors.close()
    return res.checked()


def test_sigkill_mid_surge_resumes_from_snapshot_and_journal(tmp_path: Path) -> None:
    h.assert_passed(run(tmp_path))
