"""The dashboard's FastAPI app: REST for state and history, the duty API, the /ws push stream, static pages.

The app holds no state of its own: everything lives in the Hub the service passes in (app.state.hub).
Every /api route and the push stream need a token; hosts, URLs, sizes and rates are checked in front of the
routes (docs/api-security.md).
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the route signatures, and the auth
# dependency they name (`Reader`) is local to create_app.
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import anyio.to_thread
import msgspec
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from alerts.actions import AlertActions
from dashboard import auth, logredact
from dashboard.access import Access
from dashboard.alerts_api import alerts_router, not_theirs
from dashboard.auth import Authenticator, Principal, first_of, operator_token
from dashboard.guard import LOOPBACK_HOSTS, RequestGuard, host_name
from dashboard.hub import Hub
from dashboard.limits import (
    FAILED_SIGN_INS,
    MAX_BODY_BYTES,
    PER_ADDRESS,
    PER_PRINCIPAL,
    BodyLimit,
    RateLimit,
    RateLimiter,
    retry_after,
)
from dashboard.policy import may_read_zone
from dashboard.push_api import PushRegistry, push_router
from dashboard.report_api import report_router
from dashboard.stream import AUTH_TIMEOUT_S, PING_INTERVAL_S, ScopeCache, local_check, serve_stream

STATIC_DIR = Path(__file__).parent / "static"
HISTORY_MAX_POINTS = 240
HISTORY_MIN_STEP_S = 10.0
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


def _json(body: object, status_code: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status_code, media_type="application/json")


def create_app(
    hub: Hub,
    *,
    store: object | None = None,
    allowed_origins: list[str] | None = None,
    allowed_hosts: Sequence[str] | None = None,
    actions: AlertActions | None = None,
    authenticate: Authenticator | None = None,
    api_token: str | None = None,
    wall_tokens: Sequence[str] = (),
    admin_token: str | None = None,
    ping_interval_s: float = PING_INTERVAL_S,
    push: PushRegistry | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    principal_limit: RateLimit = PER_PRINCIPAL,
    address_limit: RateLimit = PER_ADDRESS,
    failed_sign_in_limit: RateLimit = FAILED_SIGN_INS,
    rate_clock: Callable[[], float] = time.monotonic,
    ws_auth_timeout_s: float = AUTH_TIMEOUT_S,
    stream_port: int | None = None,
    stream_url: str = "",
    stream_up: Callable[[], bool] | None = None,
) -> FastAPI:
    """Build the app around a Hub. Every /api route and the /ws stream need a token (docs/api-security.md).

    store: anything with `history(zone, since, until, *, every_s) -> Sequence[dict | ZoneState]`, as
        store.base.Store (blocking; run in a thread).
    actions: the alert manager (alerts.actions.AlertActions) behind /api/alerts, silences, events, emergency
        mode, response metrics and audit (dashboard/alerts_api.py). Without it, GET /api/alerts lists what
        the hub holds and every other duty route answers 503.
    authenticate: token -> Principal (e.g. from the duty roster). api_token: a single operator token, for a
        deployment without a roster. wall_tokens: read-only display tokens (the command-centre wall).
        admin_token: the administrator's token. Any may be combined. Tokens come only in
        `Authorization: Bearer <token>` (the push stream: its first message), never in the URL. With none,
        every /api route answers 503: nobody could be held to account.
    allowed_hosts: host names the app answers to (Host header; "*.example.cn" for subdomains); default: this
        machine's loopback names only, so a DNS-rebinding page is refused. A deployment lists its names.
    allowed_origins: Origins allowed to open /ws; None: pages served by an allowed host.
    push: where officers' Web Push subscriptions are kept (dashboard/push_api.py); None: push is off.
    max_body_bytes: larger request bodies get 413 before they are read whole.
    principal_limit, address_limit: token buckets for the write endpoints (POST, PUT, PATCH, DELETE under
        /api), per principal and per client address; over either, 429 with Retry-After.
        failed_sign_in_limit: unknown tokens per client address (any route, and the push stream); past it, the
        address gets 429 (the stream: 1013 Try Again Later saying to wait) before its tokens are even looked at.
        rate_clock: the buckets' clock (tests).
    ws_auth_timeout_s: how long a new /ws connection may take to send its token before it is closed.
    stream_port: the push process's port (dashboard/pushserver.py), where the pages open their stream
        (GET /api/stream tells them); None: the pages use this app's own /ws. stream_url: where the pages
        open it instead ("/ws" behind a reverse proxy that routes /ws to the push port, or a ws(s):// URL).
        This app's /ws is served either way (in this process), for clients that know no better.
        stream_up: whether the push process serves now; while it does not, GET /api/stream answers this app's
        /ws instead of its port or full URL (a path is the reverse proxy's to route: left as it is).
    """
    history_of: Callable[..., Sequence[object]] | None = getattr(store, "history", None)
    if store is not None and not callable(history_of):
        raise TypeError(f"store {type(store).__name__} has no history(zone, since, until, *, every_s) method")

    hosts = tuple(allowed_hosts) if allowed_hosts else LOOPBACK_HOSTS
    sources = [
        authenticate,
        operator_token(api_token) if api_token else None,
        auth.wall_tokens(tuple(wall_tokens)) if wall_tokens else None,
        auth.admin_token(admin_token) if admin_token else None,
    ]
    chain = [a for a in sources if a is not None]
    access = Access(
        first_of(*chain) if chain else None,
        RateLimiter(principal_limit, now=rate_clock),
        RateLimiter(failed_sign_in_limit, now=rate_clock),
    )
    by_address = RateLimiter(address_limit, now=rate_clock)
    refused: Counter[str] = Counter()
    scopes = ScopeCache()  # officers' cut deltas, shared by every socket
    logredact.install()  # uvicorn's access log prints request targets as sent: keep credentials out of it

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub = hub
        logredact.install()  # again: uvicorn configures its loggers after the app is built
        if actions is not None:
            try:
                hub.set_emergency(actions.emergency())  # a wall connecting after a restart shows the mode
            except Exception:  # the manager is another component: the wall still starts
                log.exception("could not read the emergency mode from the alert manager")
        yield
        hub.close_all()  # every open socket's sender closes with 1001 instead of hanging shutdown

    app = FastAPI(title="crowdflow dashboard", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.state.hub = hub
    app.state.access = access
    app.state.scopes = scopes

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method in WRITE_METHODS and request.url.path.startswith("/api/"):
            # Per client address, before authentication: slows a script guessing tokens as much as a flood.
            wait = by_address.take(request.client.host if request.client else "unknown")
            if wait > 0:
                refused["rate limited (address)"] += 1
                detail = f"too many changes from your address: wait {retry_after(wait)} s, then try again"
                return Response(_encoder.encode({"detail": detail}), status_code=429, media_type="application/json",
                                headers={"Retry-After": retry_after(wait)})  # fmt: skip
        response = await call_next(request)
        # Only local assets, ever: the wall must work with no internet and leak nothing to third parties.
        host = request.headers.get("host", "")
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; connect-src 'self' ws://{host} wss://{host}{stream_sources(host)}; "
            "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-cache")  # a redeploy reaches walls at reload
        else:
            response.headers.setdefault("Cache-Control", "no-store")  # per-person answers stay out of caches
        return response

    # Outermost last: the Host and URL checks run first, then the body bound, then the routes.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(RequestGuard, allowed_hosts=hosts, refused=refused)

    Reader = Annotated[Principal, Depends(access.require("live.read"))]

    def stream_sources(host: str) -> str:
        """The push stream's origin for the page's connect-src, when it is not the page's own."""
        if stream_url.startswith(("ws://", "wss://")):
            parts = urlsplit(stream_url)
            return f" {parts.scheme}://{parts.netloc}"
        if stream_url or stream_port is None:
            return ""  # a path: same origin
        name = host_name(host)
        if not name:
            return ""
        shown = f"[{name}]" if ":" in name else name
        return f" ws://{shown}:{stream_port} wss://{shown}:{stream_port}"

    @app.get("/api/stream")
    async def stream_location() -> Response:
        # Open, like /healthz: where the push stream is says nothing a page could not guess; the stream itself
        # wants a token. "url": a path on this origin or a full URL; "port": this host name on that port.
        # While the push process is down, this app's /ws (in this process) serves the walls meanwhile.
        down = stream_up is not None and not stream_up()
        if stream_url and not (down and stream_url.startswith(("ws://", "wss://"))):
            return _json({"url": stream_url, "port": None})
        if stream_port is not None and not down:
            return _json({"url": None, "port": stream_port})
        return _json({"url": "/ws", "port": None})

    @app.get("/healthz")
    async def healthz() -> Response:
        # Open (monitoring probes have no token): service health and counters only, no zone or alert data.
        body = hub.health()
        body["access"] = {
            "refused": dict(refused),
            "unknown_tokens": access.failed,
            "rate_limited_principal": access.limiter.refused if access.limiter else 0,
            "rate_limited_address": by_address.refused,
            "sign_ins_held_back": access.held_back,
        }
        return _json(body)

    @app.get("/api/zones")
    async def zones(who: Reader) -> Response:
        return _json([z for z in hub.zones() if may_read_zone(who, str(z["id"]))])

    @app.get("/api/zones/{zone_id}")
    async def zone(zone_id: str, who: Reader) -> Response:
        view = hub.zone(zone_id)
        if view is None:
            raise HTTPException(404, f"unknown zone {zone_id!r}")
        if not may_read_zone(who, zone_id):
            raise not_theirs(who, zone_id)
        return _json(view)

    @app.get("/api/district")
    async def district(who: Reader) -> Response:
        if hub.district is None:
            raise HTTPException(503, "no district state yet: the service has not completed a tick")
        return _json(hub.district)

    @app.get("/api/zones/{zone_id}/history")
    async def history(zone_id: str, who: Reader, minutes: Annotated[int, Query(ge=1, le=1440)] = 60) -> Response:
        if hub.zone(zone_id) is None:
            raise HTTPException(404, f"unknown zone {zone_id!r}")
        if not may_read_zone(who, zone_id):
            raise not_theirs(who, zone_id)
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
        # No manager (a bare wall, a demo): the alerts the hub holds are still listed, for the caller's zones.
        @app.get("/api/alerts")
        async def alerts(who: Reader, state: Literal["open", "all"] = "open", mine: bool = False) -> Response:
            return _json([a for a in hub.alerts(state) if may_read_zone(who, str(a.get("zone")))])

    app.include_router(alerts_router(actions, access, hub))
    app.include_router(report_router(hub, history_of, actions, access))
    app.include_router(push_router(access, push))

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
        await serve_stream(
            websocket, hub, local_check(access), allowed_origins=allowed_origins, allowed_hosts=hosts,
            ping_interval_s=ping_interval_s, auth_timeout_s=ws_auth_timeout_s, scopes=scopes,
        )  # fmt: skip

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app
