"""Fuzz every untrusted-input path for a set time or number of inputs per target (issue 7, "Bad input").

    .venv/bin/python scripts/fuzz.py                       # every target, 180 s each
    .venv/bin/python scripts/fuzz.py --seconds 30 payload site
    .venv/bin/python scripts/fuzz.py --inputs 5000 --seed 7 backtest_csv

The inputs are tests/fuzz/inputs.py's hypothesis strategies (mutations of the repo's valid files and
messages), the checks tests/fuzz/targets.py's, the same as the pytest run, with far more examples. Nothing
stops the run: each input's outcome is counted, a crash (an exception the code under test let out), a
violation (a broken promise: a rejection without a reason, an accepted unusable value) or a hang (an input
running longer than --hang-s, interrupted) is counted and its first example printed. Prints progress, one
table per target and a last line `fuzz targets=N inputs=N crashes=N violations=N hangs=N slowest_ms=N`.
Exit status 1 if anything crashed, broke a promise or hung.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz import inputs, targets

TARGETS: dict[str, tuple[Callable[[Any], list[str]], st.SearchStrategy[Any]]] = {
    "payload": (targets.payload, inputs.messages()),
    "ingest": (targets.ingest, inputs.ingest_cases()),
    "site": (targets.site, inputs.site_files()),
    "roster": (targets.roster, inputs.roster_files()),
    "config": (targets.config, inputs.config_cases()),
    "backtest_csv": (targets.backtest_csv, st.tuples(inputs.csv_files(), st.booleans())),
    "labels": (targets.labels, inputs.label_files()),
}
CHUNK = 100  # examples per hypothesis run; each run gets its own seed, so the stream of inputs goes on


class Hang(BaseException):
    """Raised by the alarm inside a target that ran too long (BaseException: no target swallows it)."""


@dataclass
class Tally:
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # "crash: KeyError", "violation", "hang"
    examples: dict[str, str] = field(default_factory=dict)  # first input and traceback per failure kind
    slowest_ms: float = 0.0
    seconds: float = 0.0

    def failed(self, kind: str) -> int:
        return sum(n for k, n in self.failures.items() if k.startswith(kind))


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


def run_target(name: str, budget_s: float, max_inputs: int | None, hang_s: float, base_seed: int) -> Tally:
    check, strategy = TARGETS[name]
    tally = Tally()
    start = time.monotonic()

    def one(case: Any) -> None:
        if time.monotonic() - start > budget_s or (max_inputs is not None and tally.inputs >= max_inputs):
            return
        tally.inputs += 1
        t0 = time.perf_counter()
        kind = trace = ""
        signal.setitimer(signal.ITIMER_REAL, hang_s)
        try:
            tally.outcomes.update(check(case))
        except Hang:
            kind, trace = "hang", traceback.format_exc(limit=-6)
        except targets.Violation as e:
            kind, trace = "violation", str(e)[:1500]
        except Exception as e:  # a crash of the code under test: count it, keep its example, go on
            kind, trace = f"crash: {type(e).__name__}", traceback.format_exc(limit=-6)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        ms = (time.perf_counter() - t0) * 1000
        tally.slowest_ms = max(tally.slowest_ms, ms)
        if kind:
            tally.failures[kind] += 1
            if kind not in tally.examples:
                shown = repr(case)
                shown = shown if len(shown) <= 600 else shown[:600] + f"... ({len(shown)} chars)"
                tally.examples[kind] = f"input: {shown}\n{trace}"

    chunk = 0
    while time.monotonic() - start < budget_s and (max_inputs is None or tally.inputs < max_inputs):
        runner = seed(base_seed + chunk)(
            settings(
                max_examples=CHUNK,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(strategy)(one))
        )
        before = tally.inputs
        try:
            runner()
        except Exception as e:  # the generator itself failed: a bug of the fuzzer, not of the code under test
            print(f"  {name}: input generation failed ({type(e).__name__}: {str(e)[:200]})", flush=True)
            tally.failures["generator error"] += 1
        chunk += 1
        if tally.inputs == before:  # the strategy ran dry (cannot happen with these, but never spin)
            break
        if chunk % 10 == 0:
            print(
                f"  {name}: {tally.inputs} inputs, {time.monotonic() - start:.0f} s, "
                f"{sum(tally.failures.values())} failures",
                flush=True,
            )
    tally.seconds = time.monotonic() - start
    return tally


def print_table(name: str, t: Tally) -> None:
    total = sum(t.outcomes.values())
    print(f"\n{name}: {t.inputs} inputs in {t.seconds:.0f} s ({t.inputs / max(t.seconds, 1e-9):.0f}/s)")
    print(f"  {'outcome':<34}{'count':>9}{'share':>8}")
    for outcome, n in sorted(t.outcomes.items(), key=lambda kv: (kv[0] != "accepted", -kv[1])):
        print(f"  {outcome:<34}{n:>9}{n / max(total, 1):>8.1%}")
    print(f"  {'crashes':<34}{t.failed('crash'):>9}")
    for kind, n in sorted(t.failures.items()):
        if kind.startswith("crash: "):
            print(f"    {kind[7:]:<32}{n:>9}")
    print(f"  {'violations':<34}{t.failed('violation'):>9}")
    print(f"  {'hangs':<34}{t.failed('hang'):>9}")
    print(f"  {'slowest input (ms)':<34}{t.slowest_ms:>9.1f}")
    for kind, example in t.examples.items():
        print(f"  first {kind}:\n    " + example.rstrip().replace("\n", "\n    "))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    ap.add_argument("--seconds", type=float, default=180.0, help="time per target (default 180)")
    ap.add_argument("--inputs", type=int, default=None, help="stop a target after this many inputs")
    ap.add_argument("--hang-s", type=float, default=5.0, help="an input running longer is a hang (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    signal.signal(signal.SIGALRM, _on_alarm)
    tallies: dict[str, Tally] = {}
    for name in names:
        print(f"fuzzing {name} for {args.seconds:g} s" + (f" or {args.inputs} inputs" if args.inputs else ""))
        tallies[name] = run_target(name, args.seconds, args.inputs, args.hang_s, args.seed)
    for name, t in tallies.items():
        print_table(name, t)
    crashes = sum(t.failed("crash") for t in tallies.values())
    violations = sum(t.failed("violation") for t in tallies.values())
    hangs = sum(t.failed("hang") for t in tallies.values())
    print(
        f"\nfuzz targets={len(tallies)} inputs={sum(t.inputs for t in tallies.values())} crashes={crashes} "
        f"violations={violations} hangs={hangs} slowest_ms={max(t.slowest_ms for t in tallies.values()):.0f}"
    )
    return 1 if crashes or violations or hangs else 0


if __name__ == "__main__":
    raise SystemExit(main())
