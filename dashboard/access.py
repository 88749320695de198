"""The one place a request is let in: its bearer token, its role's permission, and its rate limit.

`Access.require(permission)` is the FastAPI dependency every /api route declares (except /api/push/key, the
public VAPID key): 401 without a known token, 403 with the reason when the role lacks the permission
(dashboard/policy.py), 429 with Retry-After when a write comes faster than the principal's rate limit, or
when the caller's address has presented too many unknown tokens (guessing is slowed to one every 5 s).
Zone-scoped checks (an officer's own zones) follow in the route with `policy.may_read_zone` / `may_act_on`.
`Access.authenticate_token` serves the push stream, which reads its token from its first message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

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

    def authenticate_token(self, token: str | None, address: str = "unknown") -> Principal | str:
        """The principal for `token`, or the reason it is refused (for the push stream's close frame)."""
        if self._authenticate is None:
            return NO_AUTH
        if token is None or not token.strip():
            return NO_TOKEN
        wait = self.too_many_failures(address)
        if wait > 0:
            return f"too many unknown tokens from your address: wait {retry_after(wait)} s, then try again"
        found = self._authenticate(token.strip())
        if found is None:
            self.failed += 1
            self.failures.take(address)
            return BAD_TOKEN
        return found

    def principal(self, credentials: HTTPAuthorizationCredentials | None, address: str = "unknown") -> Principal:
        """The caller from the Authorization header, or 401 (503 with no token source configured; 429 for an
        address that presented too many unknown tokens)."""
        if self._authenticate is None:
            raise HTTPException(503, NO_AUTH)
        if credentials is None or not credentials.credentials.strip():
            raise HTTPException(401, NO_TOKEN, headers=CHALLENGE)
        wait = self.failures.wait(address)  # counted below, by authenticate_token's own check
        if wait > 0:
            self.held_back += 1
            raise HTTPException(
                429,
                f"too many unknown tokens from your address: wait {retry_after(wait)} s, then try again",
                headers={"Retry-After": retry_after(wait)},
            )
        found = self.authenticate_token(credentials.credentials, address)
        if isinstance(found, str):
            raise HTTPException(401, found, headers=INVALID_CHALLENGE)
        return found

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
