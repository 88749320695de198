"""The dashboard's FastAPI app: REST for state and history, the duty API, the /ws push stream, static pages.

The app holds no state of its own: everything lives in the Hub the service passes in (app.state.hub).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import anyio.to_thread
import msgspec
from fastapi import FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from alerts.actions import AlertActions
from dashboard.alerts_api import alerts_router
from dashboard.auth import Authenticator, first_of, operator_token, principal_dependency
from dashboard.hub import Hub
from dashboard.push_api import PushRegistry, push_router
from dashboard.report_api import report_router
from dashboard.stream import serve_stream

STATIC_DIR = Path(__file__).parent / "static"
HISTORY_MAX_POINTS = 240
HISTORY_MIN_STEP_S = 10.0
log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


def _json(body: object, status_code: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status_code, media_type="application/json")


def create_app(
    hub: Hub,
    *,
    store: object | None = None,
    allowed_origins: list[str] | None = None,
    actions: AlertActions | None = None,
    authenticate: Authenticator | None = None,
    api_token: str | None = None,
    ping_interval_s: float = 15.0,
    push: PushRegistry | None = None,
) -> FastAPI:
    """Build the app around a Hub.

    store: anything with `history(zone, since, until, *, every_s) -> Sequence[dict | ZoneState]`, as
        store.base.Store (blocking; run in a thread).
    actions: the alert manager (alerts.actions.AlertActions) behind /api/alerts, silences, events, emergency
        mode, response metrics and audit (dashboard/alerts_api.py). Without it, GET /api/alerts lists what
        the hub holds and every other duty route answers 503.
    authenticate: token -> Principal (e.g. from the duty roster). api_token: a single operator token, for a
        deployment without a roster; both may be set. Tokens come only in `Authorization: Bearer <token>`,
        never in the URL. With neither, actions answer 503: nobody could be held to account for them.
    allowed_origins: Origins allowed to open /ws; None means the page's own host only.
    push: where officers' Web Push subscriptions are kept (dashboard/push_api.py); None: push is off.
    """
    history_of: Callable[..., Sequence[object]] | None = getattr(store, "history", None)
    if store is not None and not callable(history_of):
        raise TypeError(f"store {type(store).__name__} has no history(zone, since, until, *, every_s) method")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub = hub
        if actions is not None:
            try:
                hub.set_emergency(actions.emergency())  # a wall connecting after a restart shows the mode
            except Exception:  # the manager is another component: the wall still starts
                log.exception("could not read the emergency mode from the alert manager")
        yield
        hub.close_all()  # every open socket's sender closes with 1001 instead of hanging shutdown

    app = FastAPI(title="crowdflow dashboard", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.state.hub = hub

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        # Only local assets, ever: the wall must work with no internet and leak nothing to third parties.
        host = request.headers.get("host", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; connect-src 'self' ws://{host} wss://{host}; img-src 'self' data:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if not request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-cache")  # a redeploy reaches walls at reload
        return response

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(hub.health())

    @app.get("/api/zones")
    async def zones() -> Response:
        return _json(hub.zones())

    @app.get("/api/zones/{zone_id}")
    async def zone(zone_id: str) -> Response:
        view = hub.zone(zone_id)
        if view is None:
            raise HTTPException(404, f"unknown zone {zone_id!r}")
        return _json(view)

    @app.get("/api/district")
    async def district() -> Response:
        if hub.district is None:
            raise HTTPException(503, "no district state yet: the service has not completed a tick")
        return _json(hub.district)

    @app.get("/api/zones/{zone_id}/history")
    async def history(zone_id: str, minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> Response:
        if hub.zone(zone_id) is None:
            raise HTTPException(404, f"unknown zone {zone_id!r}")
        if history_of is None:
            raise HTTPException(503, "no history store configured")
        # Relative to the newest data's event time, so a replayed day shows its own last hour.
        end = hub.data_ts if hub.data_ts is not None else hub.clock.now()
        start = end - minutes * 60.0
        every_s = max(HISTORY_MIN_STEP_S, minutes * 60.0 / HISTORY_MAX_POINTS)  # a chart needs no more
        call = functools.partial(history_of, zone_id, start, end, every_s=every_s)
        try:
            points: Sequence[object] = await anyio.to_thread.run_sync(call)
        except Exception as e:  # the store is another component: report, do not crash the page
            raise HTTPException(503, f"history store failed: {type(e).__name__}: {e}") from e
        return _json(
            {"zone": zone_id, "start": start, "end": end, "minutes": minutes, "every_s": every_s,
             "points": [msgspec.to_builtins(p) for p in points]}
        )  # fmt: skip

    if actions is None:
        # No manager (a bare wall, a demo): the alerts the hub holds are still listed, as before.
        @app.get("/api/alerts")
        async def alerts(state: Literal["open", "all"] = "open", mine: bool = False) -> Response:
            if mine:  # without the duty system nobody's zones are known: never fall back to listing all
                raise HTTPException(503, "no alert manager: 'my alerts' needs the duty roster (run crowdflow serve)")
            return _json(hub.alerts(state))

    tokens = [a for a in (authenticate, operator_token(api_token) if api_token else None) if a is not None]
    principal = principal_dependency(first_of(*tokens) if tokens else None)
    app.include_router(alerts_router(actions, principal, hub))
    app.include_router(report_router(hub, history_of, actions))
    app.include_router(push_router(principal, push))

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)  # browsers ask on every page; no 404 noise in logs and tests

    @app.get("/officer", include_in_schema=False)
    async def officer_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "officer.html")

    @app.get("/report", include_in_schema=False)
    async def report_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "report.html")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await serve_stream(websocket, hub, allowed_origins=allowed_origins, ping_interval_s=ping_interval_s)

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
