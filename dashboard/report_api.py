"""The street office's daily report (/api/report/daily, .csv): being built for issue 5."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import APIRouter

from alerts.actions import AlertActions
from dashboard.hub import Hub


def report_router(
    hub: Hub, history: Callable[..., Sequence[object]] | None, actions: AlertActions | None
) -> APIRouter:
    return APIRouter(prefix="/api")
