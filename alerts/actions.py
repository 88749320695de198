"""What people can do to alerts, silences, events and modes: the contract between the API and the manager.

`alerts.manager.AlertManager` implements it; `dashboard/` depends only on this protocol. Every method takes
the acting person's roster id (`by`) so each action is audited, and returns JSON-able dicts as the API
serves them (alerts as `alerts.encode.alert_json`).

Errors: KeyError for an unknown id (-> 404), ValueError for an action that does not fit the current state
or bad input, with a message saying what to do (-> 409 / 422). Authorisation is the API's job (who may act
on which zone); the manager trusts `by`.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

from domain.levels import Level

AlertStateFilter = Literal["open", "resolved", "all"]


class AlertFilter(msgspec.Struct, frozen=True, kw_only=True):
    state: AlertStateFilter = "open"
    zone: str | None = None
    grid: str | None = None
    micro_grid: str | None = None
    cause: str | None = None
    min_level: Level = Level.NORMAL  # at least this level (current level; peak for resolved alerts)
    since: float | None = None  # opened at or after
    until: float | None = None  # opened before
    limit: int = 200


class AlertActions(Protocol):
    # --- alerts ---
    def list_alerts(self, f: AlertFilter) -> list[dict[str, Any]]: ...
    def get_alert(self, alert_id: str) -> dict[str, Any] | None: ...
    def acknowledge(self, alert_id: str, by: str, comment: str) -> dict[str, Any]: ...
    def comment(self, alert_id: str, by: str, text: str) -> dict[str, Any]: ...
    def resolve(self, alert_id: str, by: str, comment: str) -> dict[str, Any]: ...
    def cap(self, alert_id: str) -> bytes: ...  # CAP 1.2 XML of the alert's latest message
    def deliveries(self, alert_id: str) -> list[dict[str, Any]]: ...  # notifications and their attempts

    # --- silences ---
    def silences(self, active_only: bool) -> list[dict[str, Any]]: ...
    def add_silence(
        self,
        by: str,
        matchers: dict[str, str],
        duration_s: float,
        reason: str,
        starts_at: float | None = None,
        max_level: Level = Level.I,
    ) -> dict[str, Any]: ...
    def end_silence(self, silence_id: str, by: str) -> dict[str, Any]: ...

    # --- planned events ---
    def events(self, active_only: bool) -> list[dict[str, Any]]: ...
    def add_event(
        self,
        by: str,
        name: str,
        zones: list[str],
        starts_at: float,
        ends_at: float,
        flow_factor: float,
        reason: str,
        share: tuple[float, float, float, float] | None = None,
        density: tuple[float, float, float, float] | None = None,
    ) -> dict[str, Any]: ...
    def end_event(self, event_id: str, by: str) -> dict[str, Any]: ...

    # --- emergency mode (平急转换) ---
    def emergency(self) -> list[dict[str, Any]]: ...  # scopes now in emergency mode
    def set_emergency(self, by: str, scope: str, on: bool, reason: str) -> list[dict[str, Any]]: ...

    # --- evaluation ---
    def response_metrics(self, since: float | None, until: float | None) -> dict[str, Any]: ...
    def audit(self, subject: str | None, limit: int) -> list[dict[str, Any]]: ...
