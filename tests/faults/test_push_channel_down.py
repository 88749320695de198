"""Fault: a push channel is down or slow.

Every officer has two channels on two different notification services (two HTTP receivers, so two hosts as
the dispatcher sees them): one healthy, one broken. For two zones the broken service hangs (holds the
request open, as an overloaded server does); for the other two it answers 500. The four zones go red while
the sensors keep publishing.

Expected: every red alert reaches its officer on the healthy channel once, while the broken one is still
failing; the pipeline keeps accepting readings meanwhile (its accepted count rises while a hung delivery is
outstanding) and loses none; the journal (GET /api/alerts/{id}/deliveries) records each broken attempt as a
retryable failure, the 500s retried up to max_attempts and then given up, the hung one timed out.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.alerts.receiver import HANG, Receiver
from tests.faults import harness as h

ZONES = 4
MAX_ATTEMPTS = 3
HANGING = ("z00", "z01")


def run(workdir: Path, *, rounds: int = 150, every_s: float = 0.1) -> h.FaultResult:
    res = h.FaultResult("push channel down/slow")
    zones = h.zone_ids(ZONES)
    with (
        Receiver() as good,
        Receiver() as bad,
        h.running_broker(workdir / "mosquitto") as mosq,
        h.started(
            h.fault_service(
                workdir, mosq, ZONES,
                lambda z: [good.url("json", f"/a/{z}"), bad.url("json", f"/b/{z}")],
                [good.url("json", "/cmd")],
                client_id="cf-faults-push", max_attempts=MAX_ATTEMPTS,
            )
        ) as svc,
    ):  # fmt: skip
        for z in zones:  # before any reading is sent, so before any alert
            bad.script(f"/b/{z}", HANG if z in HANGING else 500)
        sensors = h.Sensors(zones, mosq.port)
        # Red from round 10 on (97% of capacity), for the rest of the run.
        pacer = h.Pacer(sensors, share=lambda k: 0.5 if k < 10 else 0.97, rounds=rounds, every_s=every_s)
        pacer.start()
        # The healthy channel hears of every zone while the hanging one still holds its first request.
        h.wait_for(lambda: len(h.raised(h.told(good), "/a/")) >= ZONES, 30, "every zone's NEW on the healthy channel")
        hung = [t for t in h.told(bad) if t.path.split("/")[-1] in HANGING]
        res.check(bool(hung), "the hanging channel was never tried")
        accepted_at_hang = int(svc.ingest().get("accepted", 0))
        time.sleep(3.0)
        accepted_later = int(svc.ingest().get("accepted", 0))
        res.figures["accepted_while_channel_hangs"] = str(accepted_later - accepted_at_hang)
        res.check(
            accepted_later > accepted_at_hang,
            f"ingest stood still while a delivery hung ({accepted_at_hang} -> {accepted_later} accepted)",
        )
        pacer.join(120)
        res.check(sensors.drain(60), "the feed could not deliver everything")
        res.sent = sensors.sink.acked
        res.take(svc, res.sent)

        # The journal: the 500s retried to the end, the hung ones timed out (retryable); both recorded.
        red = [a for a in svc.alerts() if a["zone"] in zones]
        ids = [a["id"] for a in red]

        def broken_attempts() -> list[dict[str, object]]:
            return [x for x in svc.attempts(ids) if not x["ok"]]

        # A hung request ends at the channel's own timeout (Apprise's socket timeout: "connection failed").
        hung_people = {f"off-{z}" for z in HANGING}
        h.wait_for(
            lambda: {str(x["person"]) for x in broken_attempts() if x["person"] in hung_people} == hung_people,
            40, "a failed attempt recorded for each hung delivery",
        )  # fmt: skip
        failed = broken_attempts()
        hung_failed = [x for x in failed if x["person"] in hung_people]
        res.figures["hung_attempt_ms"] = str(max(round(float(str(x["latency_ms"]))) for x in hung_failed))
        res.check(all(x["retryable"] for x in failed), f"a 500 or a timeout was taken as permanent: {failed[:2]}")
        by_key: dict[tuple[str, str], int] = {}
        for x in failed:
            key = (str(x["notification_id"]), str(x["person"]))
            by_key[key] = max(by_key.get(key, 0), int(str(x["attempt"])))
        errors_500 = [x for x in failed if x["person"] not in hung_people]
        res.figures["failed_attempts_recorded"] = str(len(failed))
        res.figures["retries_to_500"] = str(sum(1 for x in errors_500 if int(str(x["attempt"])) > 1))
        res.check(
            any(int(str(x["attempt"])) == MAX_ATTEMPTS and "giving up" in str(x["error"]) for x in errors_500),
            f"no 500 delivery was retried up to max_attempts={MAX_ATTEMPTS} and given up: {errors_500[:3]}",
        )
        ok_attempts = [x for x in svc.attempts(ids) if x["ok"]]
        res.check(bool(ok_attempts), "no successful delivery recorded in the journal")

        res.tally_alerts(h.told(good), zones)
        sensors.close()
    return res.checked()


def test_a_broken_channel_holds_up_neither_other_channels_nor_ingest(tmp_path: Path) -> None:
    h.assert_passed(run(tmp_path))
