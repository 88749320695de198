"""Run a benchmark script's --quick mode as a child process and read its closing key=value line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_quick(script: str, timeout_s: float = 600) -> dict[str, str]:
    """`python benchmarks/<script> --quick` from the repository root; fails with its output if it fails."""
    r = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    last = r.stdout.strip().splitlines()[-1]
    return dict(kv.split("=", 1) for kv in last.split())
