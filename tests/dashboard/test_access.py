"""Access: the failed-token limit is looked at once per attempt, whichever way the token came."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials

from dashboard.access import BAD_TOKEN, NO_AUTH, NO_TOKEN, Access, Refused
from dashboard.auth import wall_tokens
from dashboard.limits import RateLimit, RateLimiter


class CountingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(RateLimit(burst=2, per_s=0.001))
        self.waits = 0

    def wait(self, key: str) -> float:
        self.waits += 1
        return super().wait(key)


def bearer(token: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


def test_a_header_token_is_checked_against_the_failed_token_limit_once() -> None:
    limiter = CountingLimiter()
    access = Access(wall_tokens(["t-wall"]), failures=limiter)
    assert access.principal(bearer("t-wall"), "10.0.0.1").role == "wall"
    assert limiter.waits == 1  # was 2: principal() looked, then authenticate_token() looked again
    for _ in range(2):
        with pytest.raises(HTTPException) as e:
            access.principal(bearer("t-guess"), "10.0.0.1")
        assert e.value.status_code == 401
    assert limiter.waits == 3 and access.failed == 2
    with pytest.raises(HTTPException) as e:
        access.principal(bearer("t-wall"), "10.0.0.1")  # even a good token waits once the address is held
    assert e.value.status_code == 429 and e.value.headers is not None and "Retry-After" in e.value.headers
    assert limiter.waits == 4 and access.held_back == 1  # counted once per refused attempt


def test_the_push_stream_token_check_looks_once_too() -> None:
    limiter = CountingLimiter()
    access = Access(wall_tokens(["t-wall"]), failures=limiter)
    assert access.authenticate_token("t-guess", "10.0.0.2") == Refused(BAD_TOKEN, temporary=False)
    assert limiter.waits == 1


def test_a_token_not_judged_is_refused_for_now_only() -> None:
    """The stream closes with 1013 (the page keeps its token) for these, 4401 (the page forgets it) otherwise."""
    access = Access(wall_tokens(["t-wall"]), failures=RateLimiter(RateLimit(burst=1, per_s=0.01)))
    assert access.authenticate_token("t-guess", "10.0.0.2") == Refused(BAD_TOKEN, temporary=False)
    held = access.authenticate_token("t-wall", "10.0.0.2")
    assert isinstance(held, Refused) and held.temporary and "too many unknown tokens" in held.reason
    assert access.authenticate_token(None) == Refused(NO_TOKEN, temporary=False)
    assert Access(None).authenticate_token("t-wall") == Refused(NO_AUTH, temporary=True)


def test_no_token_and_no_source_answers() -> None:
    with pytest.raises(HTTPException) as e:
        Access(None).principal(bearer("x"))
    assert e.value.status_code == 503
    with pytest.raises(HTTPException) as e:
        Access(wall_tokens(["t"])).principal(None)
    assert e.value.status_code == 401 and e.value.headers == {"WWW-Authenticate": "Bearer"}
