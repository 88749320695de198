"""The duty API: alerts, silences, planned events, emergency mode, response metrics and the audit trail.

`alerts_router(actions, access, hub)` builds the routes over an `alerts.actions.AlertActions` (the alert
manager) and `dashboard.access.Access`. Who may do what is dashboard/policy.py's table (docs/api-security.md);
each route names its permission, and the zone-scoped ones are checked here:

- every route needs a token; GET /api/alerts lists only alerts of zones the caller may read (an officer's
  duty zones, a grid leader's grids, every zone for the wall, operator, command and admin), filtered here, so
  another grid's officer never receives them (mine=true is kept for the officer page, and means the same);
- one alert, its CAP and its deliveries: only for a zone the caller may read;
- acknowledge, comment, resolve: whoever may act on the alert's zone (`Principal.can_act`);
- silences: matchers confined to zones the caller may act on (officers their zones, grid leaders their
  grids, operator, command and admin anything);
- planned events: command and admin; grid leaders for zones of their grids;
- emergency mode: command and admin (the district or any grid); a grid leader for their own grid.

The manager raises KeyError for an unknown id (404) and ValueError with a message saying what to do, for an
action that does not fit the state (409) or for bad input (422). Errors are {"detail": ...}.

The manager is not thread-safe and the pipeline drives it on the event loop, so the handlers call it there
too (each call is a few SQLite statements); any change is then pushed to every wall through the hub.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the route signatures, and the auth
# dependencies they name (`Reader`, `Actor`, ...) are local to alerts_router.
import datetime as dt
import math
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints

from alerts.actions import AlertActions, AlertFilter, AlertStateFilter
from dashboard.access import Access
from dashboard.auth import Principal, grids_led, not_on_duty
from dashboard.hub import Hub
from dashboard.policy import DISTRICT_EMERGENCY, all_zones, may_read_zone
from dashboard.policy import who as who_is
from domain.levels import GRADED, Level
from domain.site import Site, ZoneKind

CAP_MEDIA_TYPE = "application/cap+xml; charset=utf-8"
LOCATION_MATCHERS = ("zone", "micro_grid", "grid")
ZONE_KINDS = frozenset(get_args(ZoneKind))
TIME_HINT = "use epoch seconds or ISO 8601, e.g. 2026-01-01T20:00:00+08:00 (no offset: the site's timezone)"

_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def _json(body: object, status_code: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status_code, media_type="application/json")


# ---- request bodies -------------------------------------------------------------------------------


def _graded_level(value: object) -> Level:
    """'II', 'orange', 'II orange', 3 or '3' -> Level.II; NORMAL is not a level one can act on."""
    level = Level.parse(str(value))
    if level not in GRADED:
        raise ValueError(f"level {value!r} is not a warning level: use one of IV/blue, III/yellow, II/orange, I/red")
    return level


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Ident = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
MatcherKey = Literal["zone", "grid", "micro_grid", "cause", "kind"]
GradedLevel = Annotated[Level, BeforeValidator(_graded_level)]
TimeIn = float | Annotated[str, StringConstraints(max_length=64)]  # epoch seconds or ISO 8601
Thresholds4 = tuple[float, float, float, float]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


class AckBody(_Body):
    comment: str = Field(default="", max_length=2000, description="optional: what the officer is doing")


class CommentBody(_Body):
    text: Text


class ResolveBody(_Body):
    comment: Text = Field(description="required: a person closing an alert says why")


class SilenceBody(_Body):
    matchers: dict[MatcherKey, Ident] = Field(
        min_length=1, description="all must match: zone, grid, micro_grid, cause, kind (zone kind)"
    )
    duration_min: float = Field(ge=1, le=1440)
    reason: Reason
    starts_at: TimeIn | None = None
    max_level: GradedLevel = Level.I


class EventBody(_Body):
    name: Name
    zones: list[Ident] = Field(min_length=1, max_length=500)
    starts_at: TimeIn
    ends_at: TimeIn
    flow_factor: float = Field(ge=1, le=20)
    reason: Reason
    share: Thresholds4 | None = None
    density: Thresholds4 | None = None


class EmergencyBody(_Body):
    scope: Ident = Field(description='"district" or a grid id')
    on: StrictBool
    reason: Reason


# ---- helpers ------------------------------------------------------------------------------------


def parse_time(value: float | str, tz: ZoneInfo, name: str) -> float:
    """Epoch seconds from epoch seconds or ISO 8601 (naive times are in `tz`); 422 naming `name` otherwise.

    >>> parse_time("2026-01-01T08:00:00+08:00", ZoneInfo("UTC"), "since")
    1767225600.0
    >>> parse_time("2026-01-01T08:00", ZoneInfo("Asia/Shanghai"), "since")
    1767225600.0
    """
    if isinstance(value, int | float):
        out = float(value)
    else:
        text = value.strip()
        try:
            out = float(text)
        except ValueError:
            try:
                when = dt.datetime.fromisoformat(text)
            except ValueError:
                raise HTTPException(422, f"{name}: {value!r} is not a time: {TIME_HINT}") from None
            out = (when if when.tzinfo is not None else when.replace(tzinfo=tz)).timestamp()
    if not math.isfinite(out):
        raise HTTPException(422, f"{name}: {value!r} is not a time: {TIME_HINT}")
    return out


def _window(since: float | None, until: float | None) -> None:
    if since is not None and until is not None and until <= since:
        raise HTTPException(422, "until must be after since")


def _find(items: list[dict[str, Any]], item_id: str, what: str) -> dict[str, Any]:
    for item in items:
        if item.get("id") == item_id:
            return item
    raise HTTPException(404, f"unknown {what} {item_id!r}")


def matched_zones(matchers: Mapping[str, str], site: Site) -> set[str] | None:
    """Zones a silence's location matchers can match; None when it has no zone, micro_grid or grid matcher.

    A zone named by the matchers but gone from the site still counts, so a stored silence stays governed.
    """
    if not any(k in matchers for k in LOCATION_MATCHERS):
        return None
    out = {
        z.id for z in site.zones.values()
        if all(matchers.get(k, v) == v for k, v in
               (("zone", z.id), ("micro_grid", z.micro_grid), ("grid", z.grid), ("kind", z.kind)))
    }  # fmt: skip
    zone = matchers.get("zone")
    if zone is not None and zone not in site.zones:
        out.add(zone)
    return out


def check_matchers(matchers: Mapping[str, str], site: Site) -> None:
    """422 for a matcher naming a zone, micro-grid, grid or zone kind the site does not have."""
    known: dict[str, Collection[str]] = {
        "zone": site.zones.keys(), "micro_grid": site.micro_grids.keys(), "grid": site.grids.keys(), "kind": ZONE_KINDS
    }  # fmt: skip
    for key, names in known.items():
        value = matchers.get(key)
        if value is not None and value not in names:
            raise HTTPException(422, f"matchers.{key}: unknown {key} {value!r}: see GET /api/zones for the site's")
    zones = matched_zones(matchers, site)
    if zones is not None and not zones:
        raise HTTPException(422, f"matchers {dict(matchers)} match no zone of the site: they contradict each other")


def may_silence(principal: Principal, matchers: Mapping[str, str], site: Site) -> None:
    """403 unless every zone the matchers can reach is one the caller may act on (the role is checked before)."""
    if all_zones(principal):
        return
    who = who_is(principal)
    zones = matched_zones(matchers, site)
    if zones is None:
        raise HTTPException(
            403, f"{who} may silence only alerts of their own zones: add a zone, micro_grid or grid matcher "
            "for zones you are on duty for, or ask the command centre for a wider silence",
        )  # fmt: skip
    outside = sorted(z for z in zones if not principal.can_act(z))
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        raise HTTPException(
            403, f"{who} is not on duty for {shown}; narrow the matchers to your own zones, "
            "or ask the command centre or the zone's officer",
        )  # fmt: skip


def may_plan(principal: Principal, zones: list[str] | tuple[str, ...]) -> None:
    """403 unless every zone of the event is the caller's (a grid leader's grids; command and admin: all)."""
    outside = sorted(z for z in zones if not principal.can_act(z))
    if outside:
        raise HTTPException(
            403, f"{who_is(principal)} leads no grid with {', '.join(outside)}; ask the command centre or that "
            "grid's leader",
        )  # fmt: skip


def may_switch(principal: Principal, scope: str, site: Site) -> None:
    """403 unless the caller may switch `scope`: the district for command and admin, a grid for its leader."""
    if principal.role in DISTRICT_EMERGENCY:
        return
    if scope == "district" or scope not in grids_led(principal, site):
        raise HTTPException(
            403, f"{who_is(principal)} may switch only their own grid's emergency mode, not {scope}; "
            "ask the command centre",
        )  # fmt: skip


def not_theirs(principal: Principal, zone_id: str) -> HTTPException:
    """403 for reading an alert of a zone the caller does not cover."""
    return HTTPException(
        403, f"{who_is(principal)} does not cover {zone_id}: you see the alerts of your own zones only"
    )


def _check_scope(scope: str, site: Site) -> None:
    if scope != "district" and scope not in site.grids:
        grids = ", ".join(sorted(site.grids))
        raise HTTPException(422, f"scope: {scope!r} is neither 'district' nor a grid id ({grids})")


def _call(fn: Callable[[], T], *, missing: str, invalid: int = 409) -> T:
    """Run a manager call, turning KeyError into 404 (`missing`) and ValueError into `invalid`."""
    try:
        return fn()
    except KeyError:
        raise HTTPException(404, missing) from None
    except ValueError as e:
        raise HTTPException(invalid, str(e)) from e


UNWIRED = "alert actions are not available: the service runs without the alert manager"


def _severity(a: Mapping[str, Any]) -> int:
    level = a.get("level")
    value = level.get("severity", 0) if isinstance(level, Mapping) else level
    return value if isinstance(value, int) else 0


def _opened(a: Mapping[str, Any]) -> float:
    value = a.get("opened_ts")
    return float(value) if isinstance(value, int | float) else 0.0


def alerts_of(act: AlertActions, f: AlertFilter, who: Principal) -> list[dict[str, Any]]:
    """The alerts `f` selects among the zones `who` may act on: most severe first, then newest.

    One query per zone of theirs (an officer has a few, a grid leader a few dozen), so `limit` counts only
    their alerts; command and operator see every zone's.
    """
    if all_zones(who):
        return act.list_alerts(f)
    own = who.zones or frozenset()
    zones = sorted(own if f.zone is None else own & {f.zone})
    found: dict[str, dict[str, Any]] = {}
    for z in zones:
        for a in act.list_alerts(msgspec.structs.replace(f, zone=z)):
            found.setdefault(str(a.get("id")), a)
    return sorted(found.values(), key=lambda a: (-_severity(a), -_opened(a)))[: f.limit]


# ---- the router -----------------------------------------------------------------------------------


def alerts_router(actions: AlertActions | None, access: Access, hub: Hub) -> APIRouter:
    """Routes under /api for the duty system. With `actions` None every route answers 503 (no manager)."""
    router = APIRouter(prefix="/api")
    site = hub.site
    tz = ZoneInfo(site.info.timezone)
    Reader = Annotated[Principal, Depends(access.require("live.read"))]
    DutyReader = Annotated[Principal, Depends(access.require("duty.read"))]
    Actor = Annotated[Principal, Depends(access.require("alert.act"))]
    Silencer = Annotated[Principal, Depends(access.require("silence.write"))]
    Planner = Annotated[Principal, Depends(access.require("event.write"))]
    Switcher = Annotated[Principal, Depends(access.require("emergency.write"))]

    def need() -> AlertActions:
        if actions is None:
            raise HTTPException(503, UNWIRED)
        return actions

    def time_or_none(value: float | str | None, name: str) -> float | None:
        return None if value is None else parse_time(value, tz, name)

    # -- alerts --

    @router.get("/alerts")
    async def list_alerts(
        state: AlertStateFilter = "open",
        zone: Annotated[str | None, Query(max_length=100)] = None,
        grid: Annotated[str | None, Query(max_length=100)] = None,
        micro_grid: Annotated[str | None, Query(max_length=100)] = None,
        cause: Annotated[str | None, Query(max_length=100)] = None,
        min_level: Annotated[str | None, Query(max_length=20, description="II, orange, II orange or 3")] = None,
        since: Annotated[str | None, Query(max_length=64, description="opened at or after")] = None,
        until: Annotated[str | None, Query(max_length=64, description="opened before")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        mine: Annotated[bool, Query(description="kept for the officer page: every listing is the caller's")] = False,
        *,
        who: Reader,
    ) -> Response:
        try:
            level = Level.NORMAL if min_level is None else Level.parse(min_level)
        except ValueError as e:
            raise HTTPException(422, f"min_level: {e}") from None
        f = AlertFilter(
            state=state, zone=zone, grid=grid, micro_grid=micro_grid, cause=cause, min_level=level,
            since=time_or_none(since, "since"), until=time_or_none(until, "until"), limit=limit,
        )  # fmt: skip
        _window(f.since, f.until)
        act = need()
        return _json(alerts_of(act, f, who))

    def readable(act: AlertActions, alert_id: str, who: Principal) -> dict[str, Any]:
        found = act.get_alert(alert_id)
        if found is None:
            raise HTTPException(404, f"unknown alert {alert_id!r}")
        zone = str(found.get("zone"))
        if not may_read_zone(who, zone):
            raise not_theirs(who, zone)
        return found

    @router.get("/alerts/{alert_id}")
    async def get_alert(alert_id: str, who: Reader) -> Response:
        return _json(readable(need(), alert_id, who))

    def act_on(alert_id: str, who: Principal, do: Callable[[AlertActions], dict[str, Any]]) -> Response:
        act = need()
        current = act.get_alert(alert_id)
        if current is None:
            raise HTTPException(404, f"unknown alert {alert_id!r}")
        zone = current.get("zone")
        if not who.can_act(zone if isinstance(zone, str) else ""):
            raise not_on_duty(who, str(zone), site)
        updated = _call(lambda: do(act), missing=f"unknown alert {alert_id!r}")
        hub.update([], None, [updated])  # every wall sees it now, not at the next tick
        return _json(updated)

    @router.post("/alerts/{alert_id}/ack")
    async def acknowledge(alert_id: str, body: AckBody, who: Actor) -> Response:
        return act_on(alert_id, who, lambda a: a.acknowledge(alert_id, who.person, body.comment.strip()))

    @router.post("/alerts/{alert_id}/comment")
    async def comment(alert_id: str, body: CommentBody, who: Actor) -> Response:
        return act_on(alert_id, who, lambda a: a.comment(alert_id, who.person, body.text))

    @router.post("/alerts/{alert_id}/resolve")
    async def resolve(alert_id: str, body: ResolveBody, who: Actor) -> Response:
        return act_on(alert_id, who, lambda a: a.resolve(alert_id, who.person, body.comment))

    @router.get("/alerts/{alert_id}/cap")
    async def cap(alert_id: str, who: Reader) -> Response:
        act = need()
        readable(act, alert_id, who)
        xml = _call(lambda: act.cap(alert_id), missing=f"unknown alert {alert_id!r}")
        return Response(xml, media_type=CAP_MEDIA_TYPE)

    @router.get("/alerts/{alert_id}/deliveries")
    async def deliveries(  # who was told, and how: duty staff only
        alert_id: str, who: Annotated[Principal, Depends(access.require("deliveries.read"))]
    ) -> Response:
        act = need()
        readable(act, alert_id, who)
        return _json(_call(lambda: act.deliveries(alert_id), missing=f"unknown alert {alert_id!r}"))

    # -- silences --

    @router.get("/silences")
    async def silences(who: DutyReader, active: bool = True) -> Response:
        return _json(need().silences(active))

    @router.post("/silences", status_code=201)
    async def add_silence(body: SilenceBody, who: Silencer) -> Response:
        act = need()
        matchers = {str(k): v for k, v in body.matchers.items()}
        check_matchers(matchers, site)
        may_silence(who, matchers, site)
        starts_at = time_or_none(body.starts_at, "starts_at")
        created = _call(
            lambda: act.add_silence(who.person, matchers, body.duration_min * 60.0, body.reason, starts_at,
                                    body.max_level),
            missing="unknown silence", invalid=422,
        )  # fmt: skip
        return _json(created, 201)

    @router.delete("/silences/{silence_id}")
    async def end_silence(silence_id: str, who: Silencer) -> Response:
        act = need()
        found = _find(act.silences(False), silence_id, "silence")
        raw = found.get("matchers")
        may_silence(who, {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}, site)
        return _json(_call(lambda: act.end_silence(silence_id, who.person), missing=f"unknown silence {silence_id!r}"))

    # -- planned events --

    @router.get("/events")
    async def events(who: DutyReader, active: bool = True) -> Response:
        return _json(need().events(active))

    @router.post("/events", status_code=201)
    async def add_event(body: EventBody, who: Planner) -> Response:
        act = need()
        unknown = sorted({z for z in body.zones if z not in site.zones})
        if unknown:
            raise HTTPException(422, f"zones: unknown zone(s) {', '.join(unknown)}: see GET /api/zones for the site's")
        may_plan(who, body.zones)
        starts, ends = parse_time(body.starts_at, tz, "starts_at"), parse_time(body.ends_at, tz, "ends_at")
        if ends <= starts:
            raise HTTPException(422, "ends_at must be after starts_at")
        zones = list(dict.fromkeys(body.zones))  # order kept, duplicates dropped
        created = _call(
            lambda: act.add_event(who.person, body.name, zones, starts, ends, body.flow_factor, body.reason,
                                  body.share, body.density),
            missing="unknown event", invalid=422,
        )  # fmt: skip
        return _json(created, 201)

    @router.delete("/events/{event_id}")
    async def end_event(event_id: str, who: Planner) -> Response:
        act = need()
        found = _find(act.events(False), event_id, "event")
        zones = found.get("zones")
        may_plan(who, [str(z) for z in zones] if isinstance(zones, list | tuple) else [])
        return _json(_call(lambda: act.end_event(event_id, who.person), missing=f"unknown event {event_id!r}"))

    # -- emergency mode --

    @router.get("/emergency")
    async def emergency(who: Reader) -> Response:
        return _json(need().emergency())

    @router.post("/emergency")
    async def set_emergency(body: EmergencyBody, who: Switcher) -> Response:
        act = need()
        _check_scope(body.scope, site)
        may_switch(who, body.scope, site)
        modes = _call(
            lambda: act.set_emergency(who.person, body.scope, body.on, body.reason),
            missing=f"unknown scope {body.scope!r}",
        )
        hub.set_emergency(modes)  # every wall switches its layout now
        return _json(modes)

    # -- evaluation --

    @router.get("/metrics/response")
    async def response_metrics(
        who: DutyReader,
        since: Annotated[str | None, Query(max_length=64)] = None,
        until: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        start, end = time_or_none(since, "since"), time_or_none(until, "until")
        _window(start, end)
        return _json(need().response_metrics(start, end))

    @router.get("/audit")
    async def audit(
        who: Annotated[Principal, Depends(access.require("audit.read"))],
        subject: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        return _json(need().audit(subject, limit))

    @router.get("/me")
    async def me(who: Reader) -> Response:
        return _json(who.as_json())

    return router
