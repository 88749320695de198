"""The one place a request is let in: its bearer token, its role's permission, and its rate limit.

`Access.require(permission)` is the FastAPI dependency every /api route declares (except /api/push/key, the
public VAPID key): 401 without a known token, 403 with the reason when the role lacks the permission
(dashboard/policy.py), 429 with Retry-After when a write comes faster than the principal's rate limit, or
when the caller's address has presented too many unknown tokens (guessing is slowed to one every 5 s).
Zone-scoped checks (an officer's own zones) follow in the route with `policy.may_read_zone` / `may_act_on`.
`Access.authenticate_token` serves the push stream, which reads its token from its first message; its refusal
says whether the token was judged (unknown: 4401, the page forgets it) or not (the address's failed-token
limit, no token source: the stream's 1013, the page keeps its token and tries again later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, NamedTuple

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dashboard.auth import Authenticator, Principal
from dashboard.limits import FAILED_SIGN_INS, RateLimiter, retry_after
from dashboard.policy import WRITES, Permission, refusal

CHALLENGE = {"WWW-Authenticate": "Bearer"}
INVALID_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}  # RFC 6750 §3.1
NO_TOKEN = (
    "missing bearer token: send the header 'Authorization: Bearer <token>' "
    "(a token in the URL is not accepted: URLs end up in logs)"
)
BAD_TOKEN = "unknown or expired token: ask the command centre for your current API token"
NO_AUTH = (
    "nobody can be authenticated: no duty roster and no dashboard token are configured "
    "(set dashboard.api_token, dashboard.wall_tokens or dashboard.admin_token, or load a roster)"
)

_bearer = HTTPBearer(auto_error=False, description="an officer's, the operator's, the wall's or the admin's token")

RequireDependency = Callable[..., Principal]


class Refused(NamedTuple):
    """Why a token was not let in. temporary: it was not even judged (the address must wait, the service
    cannot check tokens now): the same token may work later, so a page must not forget it."""

    reason: str
    temporary: bool = False


class Access:
    """Authentication, authorisation and per-principal rate limits for the routes.

    authenticate: token -> Principal, or None when no token source is configured (every route answers 503:
        acting or reading anonymously would leave no audit trail). limiter: the per-principal write limit.
    """

    def __init__(
        self,
        authenticate: Authenticator | None,
        limiter: RateLimiter | None = None,
        failures: RateLimiter | None = None,
    ) -> None:
        self._authenticate = authenticate
        self.limiter = limiter
        self.failures = failures if failures is not None else RateLimiter(FAILED_SIGN_INS)
        self.failed = 0  # unknown tokens presented (counted, never logged: the token is a secret)
        self.held_back = 0  # tokens not even looked at: their address had presented too many unknown ones

    def too_many_failures(self, address: str) -> float:
        """Seconds the address must wait before its next token is even looked at (0.0: go ahead)."""
        wait = self.failures.wait(address)
        if wait > 0:
            self.held_back += 1
        return wait

    def authenticate_token(self, token: str | None, address: str = "unknown") -> Principal | Refused:
        """The principal for `token`, or why it is refused (for the push stream's close frame and code)."""
        found = self._authenticate_once(token, address)
        if isinstance(found, Principal):
            return found
        reason, status, _ = found
        return Refused(reason, temporary=status in (429, 503))

    def _authenticate_once(self, token: str | None, address: str) -> Principal | tuple[str, int, float]:
        """The principal, or (reason, HTTP status, seconds to wait): the failed-token limit is looked at once
        per attempt, here, whichever way the token came (a header, the push stream, the push process)."""
        if self._authenticate is None:
            return NO_AUTH, 503, 0.0
        if token is None or not token.strip():
            return NO_TOKEN, 401, 0.0
        wait = self.too_many_failures(address)
        if wait > 0:
            reason = f"too many unknown tokens from your address: wait {retry_after(wait)} s, then try again"
            return reason, 429, wait
        found = self._authenticate(token.strip())
        if found is None:
            self.failed += 1
            self.failures.take(address)
            return BAD_TOKEN, 401, 0.0
        return found

    def principal(self, credentials: HTTPAuthorizationCredentials | None, address: str = "unknown") -> Principal:
        """The caller from the Authorization header, or 401 (503 with no token source configured; 429 for an
        address that presented too many unknown tokens)."""
        found = self._authenticate_once(None if credentials is None else credentials.credentials, address)
        if isinstance(found, Principal):
            return found
        reason, status, wait = found
        if status == 429:
            raise HTTPException(429, reason, headers={"Retry-After": retry_after(wait)})
        if status == 503:
            raise HTTPException(503, reason)
        challenge = CHALLENGE if reason == NO_TOKEN else INVALID_CHALLENGE
        raise HTTPException(401, reason, headers=challenge)

    def check(self, who: Principal, permission: Permission) -> Principal:
        """403 if the role lacks `permission`; 429 if it is a write over the principal's rate limit."""
        reason = refusal(who, permission)
        if reason is not None:
            raise HTTPException(403, reason)
        if permission in WRITES and self.limiter is not None:
            wait = self.limiter.take(f"{who.role}:{who.person}")
            if wait > 0:
                raise HTTPException(
                    429,
                    f"too many changes from {who.person}: wait {retry_after(wait)} s, then try again",
                    headers={"Retry-After": retry_after(wait)},
                )
        return who

    def require(self, permission: Permission) -> RequireDependency:
        """A dependency: the authenticated caller holding `permission` (401 / 403 / 429 otherwise)."""

        def dependency(
            request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
        ) -> Principal:
            address = request.client.host if request.client else "unknown"
            return self.check(self.principal(credentials, address), permission)

        return dependency
