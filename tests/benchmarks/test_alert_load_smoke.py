"""Smoke test of benchmarks/alert_load.py: a short NYE window through sim → ingest → detect → alert manager with
the shipped roster; the duty system's promises hold on it."""

from __future__ import annotations

from benchmarks.alert_load import run


def test_short_nye_window_alerts_and_answered_alerts_stop_escalating() -> None:
    silent = run("23:20", 20, answer=False)
    answered = run("23:20", 20, answer=True)
    assert silent["alerts"] > 0 and silent["notifications"] > 0
    assert answered["alerts"] == silent["alerts"]  # answering changes who is told, not what is detected
    # Acknowledged alerts are not escalated: fewer messages reach phones when officers answer.
    assert answered["messages"] < silent["messages"]
    assert answered["notifications"] <= answered["alerts"] * 4  # a handful per situation, never one per tick
