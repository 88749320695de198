"""Alert load benchmark: how many messages reach each officer's phone on New Year's Eve, with and without the
duty system's grouping, dedup and routing.

The NYE scenario (20:00-00:30) runs through sim → ingest → detect → alerts.manager.AlertManager with the shipped
Lujiazui site and duty roster, exactly as the service runs them (one tick every 5 s of simulated time), twice:
- "nobody answers": no acknowledgement, so escalation and reminders run their full course;
- "officers answer": every pushed alert is acknowledged 60 s after the push by one of its recipients.

Beside it, a per-change pager: every alert lifecycle change (raise, level change up or down, resolve) sent to
the officers responsible for the zone, per segment, with no incidents, no dedup and no escalation (what a
log-style alert system does). It sends nothing to leaders or command, so it is a floor for the officers' load,
not a like-for-like total.

Figures: alerts opened, lifecycle changes, notifications by kind, messages per officer (max and max in any
10-minute window), and the manager's share of the tick time. Ends with one key=value line.

    python benchmarks/alert_load.py [--start 20:00] [--minutes 270]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.escalation import Escalator
from alerts.journal import Journal
from alerts.manager import AlertManager
from alerts.measures import load_measures
from alerts.model import Notification
from alerts.roster import load_roster
from alerts.routing import Router
from detect.engine import DetectionEngine
from detect.overrides import Overrides
from domain.clock import ManualClock
from domain.loader import load_site
from ingest.pipeline import Ingestor
from sim.scenario import load_scenario
from sim.stream import Simulation

TICK_S = 5.0
ACK_AFTER_S = 60.0
WINDOW_S = 600.0


def _collect(into: list[Notification]) -> Callable[[Notification], bool]:
    def submit(n: Notification) -> bool:
        into.append(n)
        return True

    return submit


def run(start: str, minutes: int, answer: bool) -> dict[str, float]:
    site = load_site()
    roster = load_roster(None, site)
    router = Router(roster, site)
    sim = Simulation(site, load_scenario("nye"), start, minutes * 60.0)
    ingest = Ingestor(site)
    overrides = Overrides(site)
    engine = DetectionEngine(site, overrides=overrides)
    clock = ManualClock(sim.window[0])
    pushed: list[Notification] = []
    n = itertools.count(1)
    manager = AlertManager(
        site, journal=Journal(":memory:"), router=router, escalator=Escalator(roster.policy),
        measures=load_measures(), overrides=overrides, clock=clock, submit=_collect(pushed),
        id_factory=lambda: f"a{next(n)}",
    )  # fmt: skip
    naive_msgs: Counter[str] = Counter()
    changes = 0
    opened: set[str] = set()
    to_ack: list[tuple[float, str, str]] = []  # (when, notification key, person)
    t_engine = t_alerts = 0.0
    w0, w1 = sim.window
    next_tick = w0 + TICK_S

    def tick(now: float) -> None:
        nonlocal changes, t_engine, t_alerts
        clock.set(now)
        for r in ingest.expire(now):
            engine.apply(r, now)
        t = time.perf_counter()
        states, detections = engine.tick(now)
        t_engine += time.perf_counter() - t
        before = len(pushed)
        t = time.perf_counter()
        changed = manager.observe(detections, states, now) + manager.tick(now)
        t_alerts += time.perf_counter() - t
        for a in {a.id: a for a in changed}.values():
            last = a.history[-1].action if a.history else ""
            if last in ("raised", "level_up", "level_down", "resolved"):
                changes += 1
                opened.add(a.id)
                for rcpt in router.responsible(a.zone, now):
                    naive_msgs[rcpt.person] += 1
        if answer:
            for x in pushed[before:]:
                if x.kind in ("raised", "level_up", "member_added", "escalated", "reraised", "reminder"):
                    to_ack.append((now + ACK_AFTER_S, x.key, x.recipients[0].person))
            due = [x for x in to_ack if x[0] <= now]
            to_ack[:] = [x for x in to_ack if x[0] > now]
            for _, key, person in due:
                # The officer opens the link and acknowledges what still needs an answer in that situation.
                waiting = [a for a in manager._members(key) if a.state != "acknowledged"]
                if waiting:
                    manager.acknowledge(waiting[0].id, person, "on it (benchmark)")

    for m in sim.messages():
        while next_tick <= m.sim_ts:
            tick(next_tick)
            next_tick += TICK_S
        for r in ingest.feed(m.topic, m.payload, received_at=m.sim_ts):
            engine.apply(r, m.sim_ts)
    while next_tick <= w1:
        tick(next_tick)
        next_tick += TICK_S

    per_person: Counter[str] = Counter()
    times: dict[str, list[float]] = defaultdict(list)
    for x in pushed:
        for rcpt in x.recipients:
            per_person[rcpt.person] += 1
            times[rcpt.person].append(x.created_at)
    worst_window = 0
    for ts in times.values():
        ts.sort()
        j = 0
        for i, t in enumerate(ts):
            while ts[j] < t - WINDOW_S:
                j += 1
            worst_window = max(worst_window, i - j + 1)
    kinds = Counter(x.kind for x in pushed)
    print(f"  alerts opened {len(opened)}, lifecycle changes {changes}, notifications {len(pushed)}: "
          + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))  # fmt: skip
    print(f"  messages to phones {sum(per_person.values())} (per-change pager {sum(naive_msgs.values())}); "
          f"busiest person {per_person.most_common(1)[0] if per_person else None} "
          f"(naive {naive_msgs.most_common(1)[0] if naive_msgs else None}); worst 10 min for one person "
          f"{worst_window}")  # fmt: skip
    print(f"  manager time {t_alerts:.2f} s = {t_alerts / max(t_engine, 1e-9):.2f}x the detection engine's "
          f"{t_engine:.2f} s ({t_alerts / ((w1 - w0) / TICK_S) * 1e3:.2f} ms per tick)")  # fmt: skip
    return {
        "alerts": len(opened),
        "notifications": len(pushed),
        "messages": sum(per_person.values()),
        "naive_messages": sum(naive_msgs.values()),
        "busiest": per_person.most_common(1)[0][1] if per_person else 0,
        "naive_busiest": naive_msgs.most_common(1)[0][1] if naive_msgs else 0,
        "worst_10min": worst_window,
        "manager_vs_engine": t_alerts / max(t_engine, 1e-9),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--start", default="20:00")
    p.add_argument("--minutes", type=int, default=270)
    args = p.parse_args(argv)
    print(f"NYE {args.start} + {args.minutes} min, shipped Lujiazui roster; tick {TICK_S:g} s")
    print("nobody answers:")
    silent = run(args.start, args.minutes, answer=False)
    print(f"officers answer {ACK_AFTER_S:g} s after each push:")
    answered = run(args.start, args.minutes, answer=True)
    print(
        " ".join(f"silent_{k}={v:.2f}" if isinstance(v, float) else f"silent_{k}={v}" for k, v in silent.items())
        + " "
        + " ".join(
            f"answered_{k}={v:.2f}" if isinstance(v, float) else f"answered_{k}={v}" for k, v in answered.items()
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
