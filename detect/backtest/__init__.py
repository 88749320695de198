"""`crowdflow backtest`: run detectors offline, fast, over recorded CSVs, and score them against labels.

Pipeline, one module each: reader (CSV -> sorted series, bad rows counted) -> calendar (slot, day type,
profile expectation, vectorised) -> runner (the per-row detector loop, then levels and alerts) -> output
(RESULT.csv) / labels (recall, precision, lead time, false alarms) -> summary (text); cli ties them up.
"""

from detect.backtest.cli import main
from detect.backtest.labels import Evaluation, Window, evaluate, read_windows
from detect.backtest.reader import InputError, Recording, read_input
from detect.backtest.runner import Alert, Result, run_backtest

__all__ = [
    "Alert",
    "Evaluation",
    "InputError",
    "Recording",
    "Result",
    "Window",
    "evaluate",
    "main",
    "read_input",
    "read_windows",
    "run_backtest",
]
