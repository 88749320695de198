"""The duty API over an honest in-memory AlertActions: filters, actions on alerts with per-zone authorisation,
silences, planned events and emergency mode with their permission matrix, CAP, metrics, audit, pushes to walls."""

from __future__ import annotations

import json
import statistics
from typing import Any

import msgspec
import pytest

from alerts.actions import AlertActions, AlertFilter
from alerts.encode import alert_json
from alerts.model import AuditEntry, EmergencyMode, PlannedEvent, Silence
from dashboard.alerts_api import CAP_MEDIA_TYPE
from dashboard.app import STATIC_DIR, create_app
from dashboard.auth import Principal, token_table
from dashboard.hub import Hub
from domain.clock import ManualClock
from domain.levels import Level
from domain.site import Site
from domain.values import Alert, AlertAction, AlertChange, AlertState, Cause
from tests.dashboard.client import TestClient
from tests.dashboard.conftest import T0, alert

ACK_TARGET_S = 300.0  # the fake's target time to acknowledge, for response_metrics


class FakeActions:
    """AlertActions in dicts: audits every action, raises KeyError / ValueError where the real manager does."""

    def __init__(self, site: Site, clock: ManualClock) -> None:
        self.site = site
        self.clock = clock
        self.alerts: dict[str, Alert] = {}
        self.silence_book: dict[str, Silence] = {}
        self.event_book: dict[str, PlannedEvent] = {}
        self.modes: dict[str, EmergencyMode] = {}
        self.log: list[AuditEntry] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._n = 0

    def raise_alert(self, aid: str, zone: str, level: Level = Level.II, *, at: float | None = None,
                    cause: Cause = "capacity") -> None:  # fmt: skip
        ts = self.clock.now() if at is None else at
        z = self.site.zones[zone]
        self.alerts[aid] = Alert(
            id=aid, zone=zone, level=level, peak_level=level, cause=cause, state="raised", opened_at=ts,
            updated_at=ts, grid=z.grid, micro_grid=z.micro_grid, message=f"{zone} at 82% of capacity",
            history=[AlertChange(ts=ts, state="raised", level=level, action="raised")],
        )  # fmt: skip

    def _json(self, aid: str) -> dict[str, Any]:
        return alert_json(self.alerts[aid], self.site)

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}"

    def _audit(self, actor: str, action: str, subject: str, **detail: str) -> None:
        self.log.append(AuditEntry(ts=self.clock.now(), actor=actor, action=action, subject=subject, detail=detail))

    def _alert(self, aid: str) -> Alert:
        if aid not in self.alerts:
            raise KeyError(aid)
        return self.alerts[aid]

    def _change(self, a: Alert, state: AlertState, action: AlertAction, by: str, note: str,
                **fields: Any) -> dict[str, Any]:  # fmt: skip
        now = self.clock.now()
        change = AlertChange(ts=now, state=state, level=a.level, note=note, by=by, action=action)
        self.alerts[a.id] = msgspec.structs.replace(
            a, state=state, updated_at=now, history=[*a.history, change], **fields
        )
        self._audit(by, f"alert.{action}", a.id, comment=note)
        return self._json(a.id)

    # -- alerts --

    def list_alerts(self, f: AlertFilter) -> list[dict[str, Any]]:
        self.calls.append(("list_alerts", (f,)))
        out = []
        for a in sorted(self.alerts.values(), key=lambda a: (-a.level, -a.opened_at)):
            if f.state != "all" and (f.state == "open") != a.open:
                continue
            if (a.level if a.open else a.peak_level) < f.min_level:
                continue
            if (f.since is not None and a.opened_at < f.since) or (f.until is not None and a.opened_at >= f.until):
                continue
            wanted = {"zone": f.zone, "grid": f.grid, "micro_grid": f.micro_grid, "cause": f.cause}
            if any(v is not None and getattr(a, k) != v for k, v in wanted.items()):
                continue
            out.append(self._json(a.id))
        return out[: f.limit]

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        return self._json(alert_id) if alert_id in self.alerts else None

    def acknowledge(self, alert_id: str, by: str, comment: str) -> dict[str, Any]:
        a = self._alert(alert_id)
        if not a.open:
            raise ValueError(f"alert {alert_id} is already resolved: nothing to acknowledge")
        if a.state == "acknowledged":
            raise ValueError(f"alert {alert_id} was already acknowledged by {a.acknowledged_by}")
        return self._change(a, "acknowledged", "acknowledged", by, comment, acknowledged_at=self.clock.now(),
                            acknowledged_by=by, ack_comment=comment)  # fmt: skip

    def comment(self, alert_id: str, by: str, text: str) -> dict[str, Any]:
        a = self._alert(alert_id)
        return self._change(a, a.state, "commented", by, text)

    def resolve(self, alert_id: str, by: str, comment: str) -> dict[str, Any]:
        a = self._alert(alert_id)
        if not a.open:
            raise ValueError(f"alert {alert_id} is already resolved")
        return self._change(a, "resolved", "resolved", by, comment, resolved_at=self.clock.now(), resolved_by=by,
                            resolve_comment=comment)  # fmt: skip

    def cap(self, alert_id: str) -> bytes:
        a = self._alert(alert_id)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
            f"<identifier>{a.id}</identifier><status>Actual</status><msgType>Alert</msgType>"
            "<info><event>人群聚集</event></info></alert>"
        ).encode()

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        self._alert(alert_id)
        return [{"notification": f"n-{alert_id}", "attempts": [{"person": "wang.li", "ok": True, "attempt": 1}]}]

    # -- silences --

    def silences(self, active_only: bool) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [msgspec.to_builtins(s) for s in self.silence_book.values() if not active_only or s.active(now)]

    def add_silence(
        self, by: str, matchers: dict[str, str], duration_s: float, reason: str, starts_at: float | None = None,
        max_level: Level = Level.I,
    ) -> dict[str, Any]:  # fmt: skip
        self.calls.append(("add_silence", (by, matchers, duration_s, reason, starts_at, max_level)))
        now = self.clock.now()
        start = now if starts_at is None else starts_at
        if start + duration_s <= now:
            raise ValueError("the silence would already be over: choose a later starts_at")
        s = Silence(id=self._id("sil"), matchers=dict(matchers), starts_at=start, ends_at=start + duration_s,
                    reason=reason, created_by=by, created_at=now, max_level=max_level)  # fmt: skip
        self.silence_book[s.id] = s
        self._audit(by, "silence.created", s.id, reason=reason)
        return dict(msgspec.to_builtins(s))

    def end_silence(self, silence_id: str, by: str) -> dict[str, Any]:
        s = self.silence_book[silence_id]
        if not s.active(self.clock.now()):
            raise ValueError(f"silence {silence_id} has already ended")
        s.ended_at, s.ended_by = self.clock.now(), by
        self._audit(by, "silence.ended", s.id)
        return dict(msgspec.to_builtins(s))

    # -- planned events --

    def events(self, active_only: bool) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [msgspec.to_builtins(e) for e in self.event_book.values() if not active_only or e.active(now)]

    def add_event(
        self, by: str, name: str, zones: list[str], starts_at: float, ends_at: float, flow_factor: float,
        reason: str, share: tuple[float, float, float, float] | None = None,
        density: tuple[float, float, float, float] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        self.calls.append(("add_event", (by, name, zones, starts_at, ends_at, flow_factor, reason, share, density)))
        if share is not None and list(share) != sorted(share):
            raise ValueError("share thresholds must rise from IV to I, e.g. [0.7, 0.8, 0.9, 1.0]")
        e = PlannedEvent(id=self._id("evt"), name=name, zones=tuple(zones), starts_at=starts_at, ends_at=ends_at,
                         flow_factor=flow_factor, reason=reason, created_by=by, created_at=self.clock.now(),
                         share=share, density=density)  # fmt: skip
        self.event_book[e.id] = e
        self._audit(by, "event.created", e.id, name=name)
        return dict(msgspec.to_builtins(e))

    def end_event(self, event_id: str, by: str) -> dict[str, Any]:
        e = self.event_book[event_id]
        if e.ended_at is not None:
            raise ValueError(f"event {event_id} has already ended")
        e.ended_at, e.ended_by = self.clock.now(), by
        self._audit(by, "event.ended", e.id)
        return dict(msgspec.to_builtins(e))

    # -- emergency mode --

    def emergency(self) -> list[dict[str, Any]]:
        return [msgspec.to_builtins(m) for m in self.modes.values()]

    def set_emergency(self, by: str, scope: str, on: bool, reason: str) -> list[dict[str, Any]]:
        if on and scope in self.modes:
            raise ValueError(f"{scope} is already in emergency mode: switch it off first to restate the reason")
        if not on and scope not in self.modes:
            raise ValueError(f"{scope} is not in emergency mode")
        if on:
            self.modes[scope] = EmergencyMode(scope=scope, since=self.clock.now(), by=by, reason=reason)
        else:
            del self.modes[scope]
        self._audit(by, "emergency.on" if on else "emergency.off", scope, reason=reason)
        return self.emergency()

    # -- evaluation --

    def response_metrics(self, since: float | None, until: float | None) -> dict[str, Any]:
        """The shape of alerts.metrics.response_metrics, with one ack target for every level."""
        self.calls.append(("response_metrics", (since, until)))
        picked = [a for a in self.alerts.values()
                  if (since is None or a.opened_at >= since) and (until is None or a.opened_at < until)]  # fmt: skip

        def row(alerts: list[Alert]) -> dict[str, Any]:
            waits = [a.acknowledged_at - a.opened_at for a in alerts if a.acknowledged_at is not None]
            met = sum(w <= ACK_TARGET_S for w in waits)
            return {"alerts": len(alerts), "acknowledged": len(waits),
                    "ack_median_s": statistics.median(waits) if waits else None,
                    "ack_within_target": round(met / len(alerts), 3) if alerts else None}  # fmt: skip

        return {
            "now": self.clock.now(),
            "targets": {lv.name: {"label": lv.label, "ack_s": ACK_TARGET_S} for lv in (Level.I, Level.II)},
            "overall": row(picked),
            "by_grid": [{"grid": g, **row([a for a in picked if a.grid == g])} for g in self.site.grids],
            "by_officer": [],
        }

    def audit(self, subject: str | None, limit: int) -> list[dict[str, Any]]:
        rows = [e for e in reversed(self.log) if subject is None or e.subject == subject]
        return [msgspec.to_builtins(e) for e in rows[:limit]]


def _implements_the_protocol(x: FakeActions) -> AlertActions:
    return x  # mypy checks here that the fake implements the whole protocol


# ---- people on the mini site: one grid "riverside"; micro-grid rs-01 = seg-1, seg-2; rs-02 = plaza ----------

WANG = Principal(person="wang.li", name="Wang Li", role="officer", zones=frozenset({"seg-1", "seg-2"}))
ZHAO = Principal(person="zhao.min", name="Zhao Min", role="officer", zones=frozenset({"plaza"}))
CHEN = Principal(person="chen.jie", name="Chen Jie", role="grid_leader", zones=frozenset({"seg-1", "seg-2", "plaza"}))
FAR = Principal(person="lin.yu", name="Lin Yu", role="grid_leader", zones=frozenset({"laoshan-1"}))
CMD = Principal(person="cmd.duty", name="Command centre", role="command", zones=None)
TOKENS = {"t-wang": WANG, "t-zhao": ZHAO, "t-chen": CHEN, "t-far": FAR, "t-cmd": CMD}
OPS = "t-ops"
WALL_T = "t-wall"  # the read-only wall display
ADMIN = "t-admin"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


NO_TOKEN = {"Authorization": ""}  # overrides a client's default header: the request goes without a token


@pytest.fixture
def actions(mini_site: Site, clock: ManualClock) -> FakeActions:
    fake = FakeActions(mini_site, clock)
    fake.raise_alert("a-seg1", "seg-1", Level.II, at=T0 - 600)
    fake.raise_alert("a-plaza", "plaza", Level.III, at=T0 - 300, cause="density")
    fake.raise_alert("a-seg2", "seg-2", Level.I, at=T0 - 60)
    return fake


@pytest.fixture
def client(hub: Hub, actions: FakeActions) -> TestClient:
    """Reads without a token of their own go as the wall (the read-only display); a test sends its own."""
    app = create_app(
        hub, actions=actions, authenticate=token_table(TOKENS), api_token=OPS, wall_tokens=[WALL_T], admin_token=ADMIN
    )
    return TestClient(app, headers=auth(WALL_T))


def ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [a["id"] for a in r.json()]


# ---- listing and reading -----------------------------------------------------------------------------


def test_list_filters_reach_the_manager(client: TestClient, actions: FakeActions) -> None:
    assert ids(client.get("/api/alerts")) == ["a-seg2", "a-seg1", "a-plaza"]
    for spelling in ("II", "orange", "3", "ii orange"):
        assert ids(client.get(f"/api/alerts?min_level={spelling}")) == ["a-seg2", "a-seg1"], spelling
    assert ids(client.get("/api/alerts?micro_grid=rs-01&limit=1")) == ["a-seg2"]
    assert ids(client.get("/api/alerts?zone=plaza&cause=density&grid=riverside")) == ["a-plaza"]
    f = actions.calls[-1][1][0]
    assert (f.zone, f.cause, f.grid, f.state, f.limit) == ("plaza", "density", "riverside", "open", 200)


def test_list_times_as_epoch_or_iso_in_the_site_timezone(client: TestClient, actions: FakeActions) -> None:
    assert ids(client.get(f"/api/alerts?since={T0 - 400}")) == ["a-seg2", "a-plaza"]
    # 07:55 local (Asia/Shanghai) = T0 - 300: naive ISO is the site's time; an offset is honoured
    assert ids(client.get("/api/alerts?since=2026-01-01T07:55:00")) == ["a-seg2", "a-plaza"]
    assert ids(client.get("/api/alerts?until=2026-01-01T07:55:00%2B08:00")) == ["a-seg1"]
    assert ids(client.get("/api/alerts?until=2025-12-31T23:55:00Z")) == ["a-seg1"]
    f = actions.calls[-1][1][0]
    assert f.until == T0 - 300


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("min_level=purple", "min_level: unknown level 'purple': use one of IV/blue"),
        ("since=yesterday", "since: 'yesterday' is not a time: use epoch seconds or ISO 8601"),
        ("until=nan", "until: 'nan' is not a time"),
        (f"since={T0}&until={T0 - 1}", "until must be after since"),
    ],
)
def test_list_bad_filters_say_what_to_do(client: TestClient, query: str, needle: str) -> None:
    r = client.get(f"/api/alerts?{query}")
    assert r.status_code == 422 and needle in r.json()["detail"], r.text


@pytest.mark.parametrize("query", ["state=bogus", "limit=0", "limit=1001", "zone=" + "x" * 101])
def test_list_out_of_range_parameters_are_422(client: TestClient, query: str) -> None:
    r = client.get(f"/api/alerts?{query}")
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)


def test_resolved_and_all(client: TestClient) -> None:
    assert client.post("/api/alerts/a-plaza/resolve", json={"comment": "crowd left"}, headers=auth(OPS)).is_success
    assert ids(client.get("/api/alerts?state=resolved")) == ["a-plaza"]
    assert ids(client.get("/api/alerts?state=all&min_level=III")) == ["a-seg2", "a-seg1", "a-plaza"]


def test_get_one_alert(client: TestClient) -> None:
    body = client.get("/api/alerts/a-seg1").json()
    assert (body["zone"], body["level"]["label"], body["micro_grid"]) == ("seg-1", "II orange", "rs-01")
    r = client.get("/api/alerts/nope")
    assert r.status_code == 404 and r.json() == {"detail": "unknown alert 'nope'"}


def test_cap_is_served_as_cap_xml(client: TestClient) -> None:
    r = client.get("/api/alerts/a-seg1/cap")
    assert r.status_code == 200 and r.headers["content-type"] == CAP_MEDIA_TYPE
    assert r.content.startswith(b"<?xml") and b"<identifier>a-seg1</identifier>" in r.content
    assert "人群聚集" in r.content.decode("utf-8")
    assert client.get("/api/alerts/nope/cap").status_code == 404


def test_deliveries(client: TestClient) -> None:
    assert client.get("/api/alerts/a-seg1/deliveries", headers=NO_TOKEN).status_code == 401
    r = client.get("/api/alerts/a-seg1/deliveries")  # who was told how: duty staff only, not the wall display
    assert r.status_code == 403 and "the wall's token is read-only" in r.json()["detail"]
    r = client.get("/api/alerts/a-seg1/deliveries", headers=auth("t-zhao"))  # not their zone
    assert r.status_code == 403 and "does not cover seg-1" in r.json()["detail"]
    assert client.get("/api/alerts/a-seg1/deliveries", headers=auth("t-wang")).status_code == 200
    assert client.get("/api/alerts/a-seg1/deliveries", headers=auth(OPS)).json()[0]["notification"] == "n-a-seg1"
    assert client.get("/api/alerts/nope/deliveries", headers=auth(OPS)).status_code == 404


# ---- mine=true: the officer page's list -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("t-wang", ["a-seg2", "a-seg1"]),  # officer of seg-1 and seg-2: most severe first
        ("t-zhao", ["a-plaza"]),
        ("t-far", []),  # a grid leader elsewhere: none of these
        ("t-chen", ["a-seg2", "a-seg1", "a-plaza"]),  # the grid's leader: every zone of the grid
        ("t-cmd", ["a-seg2", "a-seg1", "a-plaza"]),
        (OPS, ["a-seg2", "a-seg1", "a-plaza"]),
    ],
)
def test_mine_lists_only_alerts_the_caller_may_act_on(client: TestClient, token: str, expected: list[str]) -> None:
    assert ids(client.get("/api/alerts?mine=true", headers=auth(token))) == expected


def test_every_listing_needs_a_token_and_is_the_callers(client: TestClient) -> None:
    for query in ("?mine=true", "", "?mine=false"):
        r = client.get("/api/alerts" + query, headers=NO_TOKEN)
        assert r.status_code == 401 and "missing bearer token" in r.json()["detail"]
    r = client.get("/api/alerts?mine=true", headers=auth("not-a-token"))
    assert r.status_code == 401 and "unknown or expired token" in r.json()["detail"]
    assert client.get("/api/alerts?mine=not-a-bool", headers=auth("t-wang")).status_code == 422
    # the wall (read-only) lists every zone's; an officer only their own, with or without mine=true
    assert ids(client.get("/api/alerts?mine=false")) == ["a-seg2", "a-seg1", "a-plaza"]
    assert ids(client.get("/api/alerts", headers=auth("t-zhao"))) == ["a-plaza"]
    assert ids(client.get("/api/alerts?mine=false", headers=auth("t-zhao"))) == ["a-plaza"]


def test_one_alert_and_its_cap_only_for_a_zone_the_caller_covers(client: TestClient) -> None:
    for path in ("/api/alerts/a-seg1", "/api/alerts/a-seg1/cap"):
        r = client.get(path, headers=auth("t-zhao"))
        assert r.status_code == 403 and r.json()["detail"] == (
            "officer zhao.min does not cover seg-1: you see the alerts of your own zones only"
        )
        assert client.get(path, headers=auth("t-wang")).status_code == 200
        assert client.get(path, headers=NO_TOKEN).status_code == 401


def test_mine_combines_with_the_other_filters(client: TestClient, actions: FakeActions) -> None:
    wang = auth("t-wang")
    assert ids(client.get("/api/alerts?mine=true&zone=plaza", headers=wang)) == []  # not theirs: nothing
    assert ids(client.get("/api/alerts?mine=true&zone=seg-1", headers=wang)) == ["a-seg1"]
    assert ids(client.get("/api/alerts?mine=true&limit=1", headers=wang)) == ["a-seg2"]  # limit counts theirs
    assert ids(client.get("/api/alerts?mine=true&min_level=I", headers=wang)) == ["a-seg2"]
    # the limit is not spent on other zones' alerts: ten newer plaza alerts do not push seg-1's out
    for n in range(10):
        actions.raise_alert(f"a-plaza-{n}", "plaza", Level.I, at=T0 + n)
    assert ids(client.get("/api/alerts?mine=true&limit=2", headers=wang)) == ["a-seg2", "a-seg1"]
    assert client.post("/api/alerts/a-seg1/resolve", json={"comment": "cleared"}, headers=wang).is_success
    assert ids(client.get("/api/alerts?mine=true", headers=wang)) == ["a-seg2"]
    assert ids(client.get("/api/alerts?mine=true&state=resolved", headers=wang)) == ["a-seg1"]
    assert ids(client.get("/api/alerts?mine=true&state=all", headers=auth("t-zhao")))[-1] == "a-plaza"


def test_mine_without_any_authenticator_is_refused(hub: Hub, actions: FakeActions) -> None:
    client = TestClient(create_app(hub, actions=actions))
    r = client.get("/api/alerts?mine=true")
    assert r.status_code == 503 and "no duty roster and no dashboard token" in r.json()["detail"]


# ---- acting on alerts ---------------------------------------------------------------------------------


def test_officer_acknowledges_own_zone_and_every_wall_sees_it(client: TestClient, hub: Hub) -> None:
    r = client.post("/api/alerts/a-seg1/ack", json={"comment": " on my way "}, headers=auth("t-wang"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "acknowledged" and body["history"][-1]["by"] == "wang.li"
    assert body["history"][-1]["note"] == "on my way"
    view = hub.alert("a-seg1")
    assert view is not None and view["state"] == "acknowledged"  # pushed to the hub at once
    assert client.post("/api/alerts/a-seg2/ack", headers=auth("t-wang"), json={}).status_code == 200  # no comment


def test_officer_on_another_zone_is_told_who_may_act(client: TestClient, actions: FakeActions) -> None:
    r = client.post("/api/alerts/a-plaza/ack", json={}, headers=auth("t-wang"))
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "officer wang.li is not on duty for plaza; ask the command centre or the zone's officer"
    )
    r = client.post("/api/alerts/a-seg1/comment", json={"text": "seen"}, headers=auth("t-zhao"))
    assert r.json()["detail"] == (
        "officer zhao.min is not on duty for seg-1; ask the command centre or the segment's officer"
    )
    r = client.post("/api/alerts/a-seg1/resolve", json={"comment": "x"}, headers=auth("t-far"))
    assert r.status_code == 403 and r.json()["detail"].startswith("grid leader lin.yu is not on duty for seg-1")
    assert all(a.state == "raised" for a in actions.alerts.values())  # nothing changed


@pytest.mark.parametrize("token", ["t-chen", "t-cmd", OPS])
def test_grid_leader_command_and_operator_act_on_every_zone_of_theirs(client: TestClient, token: str) -> None:
    for aid in ("a-seg1", "a-plaza"):
        r = client.post(f"/api/alerts/{aid}/comment", json={"text": "watching the cameras"}, headers=auth(token))
        assert r.status_code == 200, r.text
    by = r.json()["history"][-1]["by"]
    assert by == {"t-chen": "chen.jie", "t-cmd": "cmd.duty", OPS: "operator"}[token]


def test_unknown_alert_and_wrong_state(client: TestClient) -> None:
    for action, body in (("ack", {}), ("comment", {"text": "x"}), ("resolve", {"comment": "x"})):
        r = client.post(f"/api/alerts/ghost/{action}", json=body, headers=auth(OPS))
        assert r.status_code == 404 and r.json()["detail"] == "unknown alert 'ghost'"
    h = auth("t-wang")
    assert client.post("/api/alerts/a-seg1/ack", json={}, headers=h).status_code == 200
    r = client.post("/api/alerts/a-seg1/ack", json={}, headers=h)
    assert r.status_code == 409 and r.json()["detail"] == "alert a-seg1 was already acknowledged by wang.li"
    assert client.post("/api/alerts/a-seg1/resolve", json={"comment": "cleared by stewards"}, headers=h).is_success
    r = client.post("/api/alerts/a-seg1/resolve", json={"comment": "again"}, headers=h)
    assert r.status_code == 409 and "already resolved" in r.json()["detail"]


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("ack", {"by": "someone-else"}),  # who acts comes from the token, never from the body
        ("ack", {"comment": "x" * 2001}),
        ("comment", {}),
        ("comment", {"text": ""}),
        ("comment", {"text": "   "}),
        ("comment", {"text": "x" * 2001}),
        ("resolve", {}),
        ("resolve", {"comment": " "}),
        ("resolve", {"comment": "ok", "extra": 1}),
    ],
)
def test_bad_bodies_are_422(client: TestClient, action: str, body: dict[str, Any]) -> None:
    r = client.post(f"/api/alerts/a-seg1/{action}", json=body, headers=auth("t-wang"))
    assert r.status_code == 422, r.text
    assert isinstance(r.json()["detail"], list)


def test_broken_json_is_422(client: TestClient) -> None:
    r = client.post("/api/alerts/a-seg1/ack", content=b"{", headers=auth(OPS) | {"content-type": "application/json"})
    assert r.status_code == 422


# ---- silences -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "matchers", "status"),
    [
        ("t-wang", {"zone": "seg-1"}, 201),
        ("t-wang", {"micro_grid": "rs-01", "cause": "surge"}, 201),  # rs-01 is exactly his two segments
        ("t-wang", {"zone": "plaza"}, 403),
        ("t-wang", {"grid": "riverside"}, 403),  # the grid includes the plaza
        ("t-wang", {"cause": "sensor"}, 403),  # not confined to any zone
        ("t-wang", {"kind": "riverside_segment"}, 403),
        ("t-zhao", {"zone": "plaza"}, 201),
        ("t-chen", {"grid": "riverside"}, 201),
        ("t-far", {"grid": "riverside"}, 403),
        ("t-cmd", {"cause": "sensor"}, 201),
        (OPS, {"kind": "plaza"}, 201),
    ],
)
def test_silence_permission_matrix(client: TestClient, token: str, matchers: dict[str, str], status: int) -> None:
    body = {"matchers": matchers, "duration_min": 30, "reason": "counter under repair"}
    r = client.post("/api/silences", json=body, headers=auth(token))
    assert r.status_code == status, r.text


def test_silence_403_names_the_zones_that_are_not_theirs(client: TestClient) -> None:
    body = {"matchers": {"grid": "riverside"}, "duration_min": 30, "reason": "x"}
    r = client.post("/api/silences", json=body, headers=auth("t-wang"))
    assert r.json()["detail"] == (
        "officer wang.li is not on duty for plaza; narrow the matchers to your own zones, "
        "or ask the command centre or the zone's officer"
    )
    r = client.post("/api/silences", json=body | {"matchers": {"cause": "sensor"}}, headers=auth("t-wang"))
    assert "add a zone, micro_grid or grid matcher" in r.json()["detail"]


def test_silence_is_created_listed_and_ended(client: TestClient, actions: FakeActions, clock: ManualClock) -> None:
    body = {"matchers": {"zone": "seg-1"}, "duration_min": 45, "reason": "counter under repair",
            "max_level": "orange", "starts_at": "2026-01-01T08:05:00"}  # fmt: skip
    r = client.post("/api/silences", json=body, headers=auth("t-wang"))
    assert r.status_code == 201
    sid = r.json()["id"]
    assert actions.calls[-1] == (
        "add_silence", ("wang.li", {"zone": "seg-1"}, 2700.0, "counter under repair", T0 + 300, Level.II)
    )  # fmt: skip
    assert client.get("/api/silences").json() == []  # starts in 5 minutes
    r = client.get("/api/silences", headers=auth("t-wang"))  # officers act on silences, the list is the desk's
    assert r.status_code == 403 and "ask your grid leader or the command centre" in r.json()["detail"]
    assert [s["id"] for s in client.get("/api/silences?active=false").json()] == [sid]
    clock.advance(600)
    assert [s["id"] for s in client.get("/api/silences?active=true").json()] == [sid]
    assert client.delete(f"/api/silences/{sid}", headers=auth("t-zhao")).status_code == 403
    r = client.delete(f"/api/silences/{sid}", headers=auth("t-wang"))
    assert r.status_code == 200 and r.json()["ended_by"] == "wang.li"
    r = client.delete(f"/api/silences/{sid}", headers=auth("t-wang"))
    assert r.status_code == 409 and "already ended" in r.json()["detail"]
    assert client.delete("/api/silences/nope", headers=auth(OPS)).status_code == 404
    assert client.delete(f"/api/silences/{sid}", headers=NO_TOKEN).status_code == 401
    r = client.delete(f"/api/silences/{sid}")  # the wall display's token
    assert r.status_code == 403 and "the wall's token is read-only" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"matchers": {}}, "at least 1 item"),
        ({"matchers": {"colour": "red"}}, "'zone', 'grid', 'micro_grid', 'cause' or 'kind'"),
        ({"matchers": {"zone": "pier-9"}}, "matchers.zone: unknown zone 'pier-9'"),
        ({"matchers": {"zone": "seg-1", "micro_grid": "rs-02"}}, "match no zone of the site"),
        ({"duration_min": 0}, "greater than or equal to 1"),
        ({"duration_min": 1441}, "less than or equal to 1440"),
        ({"reason": ""}, "at least 1 character"),
        ({"max_level": "normal"}, "is not a warning level"),
        ({"max_level": "purple"}, "unknown level 'purple'"),
        ({"starts_at": "soon"}, "starts_at: 'soon' is not a time"),
        ({"starts_at": T0 - 7200}, "would already be over"),  # the manager's ValueError, as 422
        ({"until": 5}, "Extra inputs are not permitted"),
    ],
)
def test_silence_bad_input(client: TestClient, change: dict[str, Any], needle: str) -> None:
    body = {"matchers": {"zone": "seg-1"}, "duration_min": 30, "reason": "repair"} | change
    r = client.post("/api/silences", json=body, headers=auth(OPS))
    assert r.status_code == 422 and needle in json.dumps(r.json()["detail"]), r.text


# ---- planned events -----------------------------------------------------------------------------------

EVENT = {"name": "跨年烟花 NYE fireworks", "zones": ["seg-1", "seg-2"], "starts_at": "2026-12-31T22:00:00",
         "ends_at": "2027-01-01T01:00:00+08:00", "flow_factor": 3.5, "reason": "fireworks over the river"}  # fmt: skip


@pytest.mark.parametrize(
    ("token", "zones", "status"),
    [("t-wang", ["seg-1"], 403), ("t-chen", ["seg-1", "plaza"], 201), ("t-far", ["seg-1"], 403),
     ("t-cmd", ["plaza"], 201), (ADMIN, ["seg-2"], 201), (OPS, ["seg-2"], 403), (WALL_T, ["seg-2"], 403)],
)  # fmt: skip
def test_event_permission_matrix(client: TestClient, token: str, zones: list[str], status: int) -> None:
    r = client.post("/api/events", json=EVENT | {"zones": zones}, headers=auth(token))
    assert r.status_code == status, r.text


def test_event_messages_say_who_may(client: TestClient) -> None:
    r = client.post("/api/events", json=EVENT, headers=auth("t-wang"))
    assert r.json()["detail"] == (
        "officer wang.li may not register or end planned events: ask the grid leader or the command centre"
    )
    r = client.post("/api/events", json=EVENT, headers=auth("t-far"))
    assert r.json()["detail"] == (
        "grid leader lin.yu leads no grid with seg-1, seg-2; ask the command centre or that grid's leader"
    )


def test_event_is_created_listed_and_ended(client: TestClient, actions: FakeActions) -> None:
    body = EVENT | {"zones": ["seg-1", "seg-2", "seg-1"], "share": [0.7, 0.8, 0.9, 1.0]}
    r = client.post("/api/events", json=body, headers=auth("t-chen"))
    assert r.status_code == 201
    eid = r.json()["id"]
    nye_22h = 1_798_725_600.0  # 2026-12-31 22:00 Asia/Shanghai
    assert actions.calls[-1] == ("add_event", (
        "chen.jie", EVENT["name"], ["seg-1", "seg-2"], nye_22h, nye_22h + 3 * 3600, 3.5, EVENT["reason"],
        (0.7, 0.8, 0.9, 1.0), None,
    ))  # fmt: skip
    assert client.get("/api/events").json() == []  # not active yet
    assert [e["id"] for e in client.get("/api/events?active=false").json()] == [eid]
    assert client.delete(f"/api/events/{eid}", headers=auth("t-wang")).status_code == 403
    assert client.delete(f"/api/events/{eid}", headers=auth("t-cmd")).json()["ended_by"] == "cmd.duty"
    assert client.delete(f"/api/events/{eid}", headers=auth("t-cmd")).status_code == 409
    assert client.delete("/api/events/nope", headers=auth("t-cmd")).status_code == 404


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"flow_factor": 25}, "less than or equal to 20"),
        ({"flow_factor": 0.5}, "greater than or equal to 1"),
        ({"zones": []}, "at least 1 item"),
        ({"zones": ["seg-1", "pier-9"]}, "zones: unknown zone(s) pier-9"),
        ({"ends_at": "2026-12-31T21:00:00"}, "ends_at must be after starts_at"),
        ({"reason": None}, "string_type"),
        ({"share": [0.9, 0.8, 0.7, 0.6]}, "must rise from IV to I"),  # the manager's ValueError, as 422
        ({"share": [0.7, 0.8]}, '"share", 2], "msg": "Field required"'),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_event_bad_input(client: TestClient, change: dict[str, Any], needle: str) -> None:
    r = client.post("/api/events", json=EVENT | change, headers=auth(ADMIN))
    assert r.status_code == 422 and needle in json.dumps(r.json()["detail"]), r.text


# ---- emergency mode -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "scope", "status"),
    [("t-wang", "riverside", 403), ("t-chen", "riverside", 200), ("t-chen", "district", 403),
     ("t-far", "riverside", 403), ("t-cmd", "district", 200), (ADMIN, "district", 200), (ADMIN, "riverside", 200),
     (OPS, "riverside", 403), (WALL_T, "riverside", 403)],
)  # fmt: skip
def test_emergency_permission_matrix(client: TestClient, token: str, scope: str, status: int) -> None:
    r = client.post("/api/emergency", json={"scope": scope, "on": True, "reason": "crowd"}, headers=auth(token))
    assert r.status_code == status, r.text


def test_emergency_messages_and_bad_input(client: TestClient) -> None:
    body = {"scope": "district", "on": True, "reason": "crowd on the bridge"}
    r = client.post("/api/emergency", json=body, headers=auth("t-wang"))
    assert r.json()["detail"] == "officer wang.li may not switch emergency mode: ask the command centre"
    r = client.post("/api/emergency", json=body, headers=auth("t-chen"))
    assert r.json()["detail"] == (
        "grid leader chen.jie may switch only their own grid's emergency mode, not district; ask the command centre"
    )
    r = client.post("/api/emergency", json=body, headers=auth(OPS))
    assert r.json()["detail"] == "operator operator may not switch emergency mode: ask the command centre"
    r = client.post("/api/emergency", json=body | {"scope": "moon"}, headers=auth(ADMIN))
    assert r.status_code == 422
    assert r.json()["detail"] == "scope: 'moon' is neither 'district' nor a grid id (riverside)"
    for bad in ({"reason": ""}, {"on": "yes"}, {"on": None}, {"why": "x"}):
        assert client.post("/api/emergency", json=body | bad, headers=auth(ADMIN)).status_code == 422, bad
    r = client.post("/api/emergency", json=body | {"on": False}, headers=auth(ADMIN))
    assert r.status_code == 409 and r.json()["detail"] == "district is not in emergency mode"


def test_emergency_switch_reaches_a_connected_wall(hub: Hub, actions: FakeActions) -> None:
    app = create_app(hub, actions=actions, authenticate=token_table(TOKENS))
    with TestClient(app, headers=auth("t-cmd")) as client, client.websocket_connect("/ws") as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["emergency"] == []
        body = {"scope": "district", "on": True, "reason": "crowd building on the promenade"}
        r = client.post("/api/emergency", json=body, headers=auth("t-cmd"))
        assert r.status_code == 200 and [m["scope"] for m in r.json()] == ["district"]
        delta = ws.receive_json()
        assert (delta["type"], delta["seq"], delta["zones"], delta["alerts"]) == ("delta", snap["seq"] + 1, [], [])
        assert delta["emergency"] == [{
            "scope": "district", "scope_name_zh": "测试街道", "scope_name_en": "Test subdistrict", "since": T0,
            "by": "cmd.duty", "reason": "crowd building on the promenade",
        }]  # fmt: skip
        assert client.get("/api/emergency").json()[0]["by"] == "cmd.duty"
        client.post("/api/emergency", json=body | {"on": False, "reason": "cleared"}, headers=auth("t-cmd"))
        assert ws.receive_json()["emergency"] == []
        # an acknowledgement is pushed too, as a delta with the updated alert and no emergency change
        client.post("/api/alerts/a-seg1/ack", json={"comment": "going"}, headers=auth("t-wang"))
        delta = ws.receive_json()
        assert [a["id"] for a in delta["alerts"]] == ["a-seg1"] and delta["alerts"][0]["state"] == "acknowledged"
        assert delta["emergency"] is None
    entries = [(e.actor, e.action, e.subject) for e in actions.log]
    assert entries[:2] == [("cmd.duty", "emergency.on", "district"), ("cmd.duty", "emergency.off", "district")]


def test_a_wall_connecting_after_a_restart_sees_the_mode(hub: Hub, actions: FakeActions) -> None:
    actions.set_emergency("chen.jie", "riverside", True, "fireworks crowd")
    app = create_app(hub, actions=actions, wall_tokens=[WALL_T])
    with TestClient(app, headers=auth(WALL_T)) as client, client.websocket_connect("/ws") as ws:
        snap = ws.receive_json()
        assert [(m["scope"], m["by"], m["scope_name_en"]) for m in snap["emergency"]] == [
            ("riverside", "chen.jie", "Riverside")
        ]


def test_hub_emergency_is_checked_ordered_and_sent_only_on_change(hub: Hub) -> None:
    mode = {"scope": "riverside", "since": T0, "by": "chen.jie", "reason": "r"}
    assert hub.set_emergency([mode, {"scope": "district", "since": T0 + 5, "by": "cmd", "reason": "x"}])
    assert [m["scope"] for m in hub.emergency] == ["district", "riverside"]  # district first
    seq = hub.seq
    assert not hub.set_emergency([{**mode}, {"scope": "district", "since": T0 + 5, "by": "cmd", "reason": "x"}])
    assert hub.seq == seq  # unchanged: no delta
    assert hub.set_emergency([mode, {"scope": "district"}, "junk"])  # type: ignore[list-item]
    assert [m["scope"] for m in hub.snapshot()["emergency"]] == ["riverside"]
    assert hub.rejected["emergency mode without scope, since, by and reason"] == 2
    assert hub.set_emergency([{**mode, "scope": "gone-grid"}])
    assert hub.emergency[0]["scope_name_en"] == "gone-grid"  # a grid no longer in the site shows by its id


# ---- metrics, audit, me -------------------------------------------------------------------------------


def test_response_metrics(client: TestClient, actions: FakeActions, clock: ManualClock) -> None:
    clock.advance(60)
    client.post("/api/alerts/a-seg2/ack", json={}, headers=auth("t-wang"))  # 120 s after it opened
    r = client.get("/api/metrics/response")
    assert r.status_code == 200
    grid = r.json()["by_grid"][0]
    assert (grid["grid"], grid["alerts"], grid["ack_median_s"]) == ("riverside", 3, 120)
    assert grid["ack_within_target"] == 0.333
    r = client.get("/api/metrics/response?since=2026-01-01T07:59:00&until=" + str(T0 + 3600))
    assert r.json()["by_grid"][0]["alerts"] == 1 and actions.calls[-1] == ("response_metrics", (T0 - 60, T0 + 3600))
    assert client.get("/api/metrics/response?since=later").status_code == 422
    assert client.get(f"/api/metrics/response?since={T0}&until={T0}").status_code == 422


def test_audit_is_for_the_command_centre(client: TestClient) -> None:
    client.post("/api/alerts/a-seg1/comment", json={"text": "stewards sent"}, headers=auth("t-wang"))
    client.post("/api/alerts/a-plaza/comment", json={"text": "camera 3 dark"}, headers=auth("t-zhao"))
    assert client.get("/api/audit", headers=NO_TOKEN).status_code == 401
    for token in (WALL_T, "t-zhao", "t-chen"):
        assert client.get("/api/audit", headers=auth(token)).status_code == 403, token
    rows = client.get("/api/audit?subject=a-seg1", headers=auth("t-cmd")).json()
    assert [(e["actor"], e["action"], e["detail"]) for e in rows] == [
        ("wang.li", "alert.commented", {"comment": "stewards sent"})
    ]
    assert len(client.get("/api/audit?limit=1", headers=auth(OPS)).json()) == 1
    assert client.get("/api/audit?limit=0", headers=auth(OPS)).status_code == 422


def test_me(client: TestClient) -> None:
    assert client.get("/api/me", headers=NO_TOKEN).status_code == 401
    assert client.get("/api/me").json() == {"person": "wall", "name": "wall display", "role": "wall", "zones": None}
    assert client.get("/api/me", headers=auth("t-wang")).json() == {
        "person": "wang.li", "name": "Wang Li", "role": "officer", "zones": ["seg-1", "seg-2"]
    }  # fmt: skip
    assert client.get("/api/me", headers=auth(OPS)).json() == {
        "person": "operator", "name": "operator", "role": "operator", "zones": None
    }  # fmt: skip


# ---- without a manager, without authentication ------------------------------------------------------------


def test_without_a_manager_the_hub_lists_alerts_and_actions_answer_503(hub: Hub) -> None:
    client = TestClient(create_app(hub, api_token=OPS, authenticate=token_table(TOKENS)))
    hub.update([], None, [alert("a1"), alert("a2", zone="plaza")])
    assert ids(client.get("/api/alerts", headers=auth(OPS))) == ["a1", "a2"]
    assert ids(client.get("/api/alerts", headers=auth("t-zhao"))) == ["a2"]  # the officer's zones only
    assert client.get("/api/alerts", headers=NO_TOKEN).status_code == 401
    for method, path, body in (("POST", "/api/alerts/a1/ack", {}), ("GET", "/api/silences", None),
                               ("POST", "/api/silences", {"matchers": {"zone": "seg-1"}, "duration_min": 5,
                                                          "reason": "x"}),
                               ("GET", "/api/metrics/response", None)):  # fmt: skip
        r = client.request(method, path, json=body, headers=auth(OPS))
        assert r.status_code == 503 and "without the alert manager" in r.json()["detail"], path
    assert client.get("/api/me", headers=auth(OPS)).json()["role"] == "operator"  # auth works regardless


def test_without_any_token_configured_actions_are_refused_not_anonymous(hub: Hub, actions: FakeActions) -> None:
    client = TestClient(create_app(hub, actions=actions))
    r = client.post("/api/alerts/a-seg1/ack", json={})
    assert r.status_code == 503 and "no duty roster and no dashboard token" in r.json()["detail"]
    assert client.get("/api/alerts/a-seg1").status_code == 503  # reads too: nobody could be let in
    assert actions.alerts["a-seg1"].state == "raised"


def test_the_wall_has_an_emergency_layout_and_a_response_section(hub: Hub) -> None:
    page = TestClient(create_app(hub)).get("/").text
    assert 'id="emergency"' in page and 'id="response"' in page
    js = "".join(p.read_text(encoding="utf-8") for p in sorted(STATIC_DIR.glob("*.js")))
    assert "EMERGENCY MODE" in js and "/api/metrics/response" in js
    assert "innerHTML" not in js  # data reaches the page as text only
    assert "body.emergency" in (STATIC_DIR / "style.css").read_text(encoding="utf-8")
