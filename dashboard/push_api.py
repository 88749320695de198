"""Officers' Web Push subscriptions (/api/push/key, /api/push/subscriptions): being built for issue 5."""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter

from dashboard.auth import AuthDependency


class PushRegistry(Protocol):
    """Where the service keeps browsers' PushSubscriptions (filled in with the officer page)."""


def push_router(principal: AuthDependency, push: PushRegistry | None) -> APIRouter:
    return APIRouter(prefix="/api")
