"""The fault table: each fault of tests/faults run against a real Mosquitto and `crowdflow serve`, with its
messages sent, received (accepted by ingest), lost, duplicated, redelivered (QoS 1 repeats that ingest caught
and dropped by sequence number: not a loss, not a duplicate), and alerts expected, delivered and notified twice.

The faults (one module each in tests/faults/, whose `run` this script calls with larger figures than the tests):
- broker restart: Mosquitto stopped mid-surge and started again on the same port (persistent sessions);
- broker crash: the same with SIGKILL: Mosquitto comes back from its last autosave;
- service SIGKILL: the service frozen with deliveries unacknowledged, killed, restarted from its snapshot
  and journal while the sensors go on publishing;
- push channel down/slow: one of each officer's two channels hangs or answers 500;
- slow/stalled/N idle /ws: push-stream clients that read slowly, never, or idle by the thousand (1,000 with
  --quick, 2,000 otherwise), all on the push process (dashboard.push_port); its figures include the service's
  CPU per ingested message with them against the lone wall's, side by side in the run
  (idle_vs_alone_service_cpu_ratio), and the push process's own CPU;
- sensor clocks/burst/flood: clocks 3 and 10 minutes off, an hour replayed at once, a topic flooded.

"lost" counts messages that should have been accepted and were not; "duplicated" in the last line adds
messages accepted twice and notifications received twice. The target is 0 and 0.

Usage:
    .venv/bin/python benchmarks/faults.py            # every fault, benchmark sizes (a few minutes)
    .venv/bin/python benchmarks/faults.py --quick    # every fault at the tests' sizes
    .venv/bin/python benchmarks/faults.py --quick --only sensor   # the faults whose name contains "sensor"
    .venv/bin/python benchmarks/faults.py --only idle --ws-in-process   # the /ws fault with the push process,
        # then again with every client on the main port's /ws (push_port off): before and after, one run

Ends with one line: faults=N lost=N duplicated=N alerts_missed=N. Exits 1 if any fault's expectations failed
(each is listed with what went wrong).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import print_machine  # noqa: E402
from tests.faults import (  # noqa: E402
    test_broker_restart,
    test_push_channel_down,
    test_sensor_abuse,
    test_service_killed,
    test_ws_clients,
)
from tests.faults.harness import FaultResult, summary_line, table  # noqa: E402

Run = Callable[[Path], FaultResult]

# (name, quick run: the tests' sizes, full run)
FAULTS: list[tuple[str, Run, Run]] = [
    (
        "broker restart",
        test_broker_restart.run,
        lambda w: test_broker_restart.run(w, rounds=200, every_s=0.05, down_s=5.0),
    ),
    (
        "broker crash (SIGKILL)",
        lambda w: test_broker_restart.run(w, crash=True),
        lambda w: test_broker_restart.run(w, rounds=200, every_s=0.05, down_s=5.0, crash=True),
    ),
    ("service SIGKILL", test_service_killed.run, lambda w: test_service_killed.run(w, rounds=100)),
    ("push channel down/slow", test_push_channel_down.run, test_push_channel_down.run),
    ("slow/stalled/idle /ws clients", test_ws_clients.run, lambda w: test_ws_clients.run(w, idle=2000)),
    ("sensor clocks/burst/flood", test_sensor_abuse.run, lambda w: test_sensor_abuse.run(w, flood=20_000)),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the tests' sizes")
    ap.add_argument("--only", default="", help="run only the faults whose name contains this")
    ap.add_argument("--ws-in-process", action="store_true",
                    help="also run the /ws fault without the push process (clients on the main port), to compare")
    args = ap.parse_args(argv)
    faults = list(FAULTS)
    if args.ws_in_process:
        faults.append((
            "slow/stalled/idle /ws clients, in process",
            lambda w: test_ws_clients.run(w, in_process=True),
            lambda w: test_ws_clients.run(w, idle=2000, in_process=True),
        ))  # fmt: skip
    chosen = [f for f in faults if args.only.lower() in f[0].lower()]  # e.g. "idle" for the /ws fault
    if not chosen:
        ap.error(f"no fault matches {args.only!r}; faults: {', '.join(f[0] for f in faults)}")
    print_machine()
    results: list[FaultResult] = []
    with tempfile.TemporaryDirectory(prefix="cf-faults-") as tmp:
        for i, (name, quick, full) in enumerate(chosen):
            t0 = time.monotonic()
            res = (quick if args.quick else full)(Path(tmp) / f"f{i}")
            print(f"{name}: {time.monotonic() - t0:.0f} s; " + ", ".join(f"{k}={v}" for k, v in res.figures.items()))
            results.append(res)
    print()
    print(table(results))
    failed = [r for r in results if r.problems]
    for r in failed:
        print(f"FAILED {r.report()}")
    print(summary_line(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
