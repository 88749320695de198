"""The runnable examples in detect/ and alerts/ docstrings stay true."""

from __future__ import annotations

import doctest
from pathlib import Path
from types import ModuleType

import pytest

import alerts.lifecycle
import detect.durations
import detect.flowsignals
import detect.forecast
import detect.grading
import detect.health
import detect.rates
import detect.state

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module",
    [
        detect.rates,
        detect.state,
        detect.grading,
        detect.durations,
        detect.health,
        detect.forecast,
        detect.flowsignals,
        alerts.lifecycle,
    ],
)
def test_docstring_examples(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples load tests/fixtures/mini_site.toml
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
