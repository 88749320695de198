"""Fault: sensors that misbehave: skewed clocks, a burst after reconnecting, a flood on one topic.

Real Mosquitto and `crowdflow serve` (wall clock). Four plazas, each with a camera and a gate counter:
- z00's camera runs 3 minutes fast and z01's 10 minutes slow (both within what ingest accepts: 5 minutes
  ahead, 6 hours old); z02's gate runs 10 minutes fast: every one of its readings is rejected as
  timestamp_out_of_range, counted, and the rest of z02 goes on;
- z03's gate was offline for an hour and, on reconnecting, replays its buffered hour (720 readings, one per 5 s)
  at once;
- z02's camera floods its topic: thousands of valid readings as fast as the broker takes them, and as
  many payloads that are not JSON, while the other sensors keep their pace. Ingest takes at most 200
  readings per sensor and kind within 10 s of event time and rejects the rest as too_frequent, counted.

Expected: every message accounted for: accepted, or rejected with the reason the fault provokes (nothing
else rejected, nothing lost); each zone's arrivals today equal what its gate counted in (z02: nothing, its
clock is out of range; z03: the whole replayed hour); the flood bounded (the subscriber drops nothing; its
reads pause when its queue is full) and counted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.faults import harness as h

ZONES = 4
AHEAD_S, BEHIND_S, OUT_OF_RANGE_S = 180.0, -600.0, 600.0
REPLAY = 720  # an hour of 5 s readings


def run(workdir: Path, *, rounds: int = 40, every_s: float = 0.1, flood: int = 3000) -> h.FaultResult:
    res = h.FaultResult("sensor clocks/burst/flood")
    zones = h.zone_ids(ZONES)
    with h.one_receiver_run(workdir, ZONES, client_id="cf-faults-sensors") as (_rx, mosq, svc):
        sensors = h.Sensors(zones, mosq.port)
        flooder = h.Sensors(zones, mosq.port)  # its own connection, as a misbehaving device has
        flooder.seq[h.cam("z02")] = 1_000_000  # its seq runs far ahead of the paced readings'
        flood_topic = f"dt/crowdflow/g/z02/{h.cam('z02')}/occupancy"

        def flood_topic_with_everything() -> None:
            for i in range(flood):
                flooder.people("z02", 400 + i % 5)
                flooder.raw(flood_topic, b"\x00not json " + str(i).encode())

        out_of_range = 0
        first_reading = time.time()  # z02's camera's readings are stamped from here on
        flood_thread = threading.Thread(target=flood_topic_with_everything, daemon=True)
        for k in range(rounds):
            if k == 5:
                flood_thread.start()
            sensors.people("z00", 400 + k % 3, skew_s=AHEAD_S)
            sensors.crossing("z00", 3, 1)
            sensors.people("z01", 400 + k % 3, skew_s=BEHIND_S)
            sensors.crossing("z01", 3, 1)
            sensors.people("z02", 400 + k % 3)
            sensors.crossing("z02", 3, 1, skew_s=OUT_OF_RANGE_S)
            out_of_range += 1
            sensors.people("z03", 400 + k % 3)
            time.sleep(every_s)
        # z03's gate comes back and replays the hour it buffered, oldest first, all at once.
        now = time.time()
        for i in range(REPLAY):
            sensors.crossing("z03", 2 + i % 3, 1, at=now - 3600 + 5 * (i + 1))
        flood_thread.join(120)
        res.check(sensors.drain(60) and flooder.drain(60), "the broker did not acknowledge everything")
        res.sent = sensors.sink.acked + flooder.sink.acked
        res.expected_rejected = out_of_range + flood
        ingest = res.take(
            svc, res.sent, ignore=("timestamp_out_of_range", "malformed_json", "too_frequent"), timeout_s=120
        )
        rejected = dict(ingest.get("rejected") or {})
        # z02's camera: its paced readings and the flood, stamped within a few 10 s windows of event time.
        bounded = int(rejected.get("too_frequent", 0))
        res.expected_rejected += bounded
        res.check(
            bounded > 0 and 200 <= rounds + flood - bounded <= 200 * ((time.time() - first_reading) // 10 + 2),
            f"the flood of {flood} readings should be cut to 200 per 10 s (too_frequent): {rejected}",
        )
        res.check(
            rejected.get("timestamp_out_of_range") == out_of_range,
            f"{out_of_range} readings from a clock 10 min fast should be rejected as timestamp_out_of_range: "
            f"{rejected}",
        )
        res.check(
            rejected.get("malformed_json") == flood,
            f"{flood} garbage payloads should be malformed_json: {rejected}",
        )
        res.figures["rejected"] = ",".join(f"{k}:{v}" for k, v in sorted(rejected.items()))

        pipeline = svc.pipeline()
        sub = svc.health().get("subscriber", {})
        res.figures["tracker_rejected"] = str(pipeline.get("tracker_rejected"))
        res.figures["read_pauses"] = str(sub.get("read_pauses"))
        res.figures["largest_batch"] = str(sub.get("largest_batch"))
        res.check(int(sub.get("dropped", 0)) == 0, f"the subscriber dropped messages under the flood: {sub}")

        # Each zone's arrivals: what its gate counted in; z02's gate is out of range, so none.
        expected = {z: sensors.arrivals_today(z) for z in zones} | {"z02": 0}
        zs = svc.zones()
        wrong = {
            z: (zs[z].get("arrivals_today"), expected[z]) for z in zones if zs[z].get("arrivals_today") != expected[z]
        }
        res.check(not wrong, f"arrivals today (service, gates) differ: {wrong}")
        sensors.close()
        flooder.close()
    return res.checked()


def test_skewed_clocks_a_replayed_hour_and_a_flood_are_handled_and_counted(tmp_path: Path) -> None:
    h.assert_passed(run(tmp_path))
