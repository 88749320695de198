"""Starlette's TestClient, imported so its 'install httpx2' deprecation warning does not fail collection.

Starlette >= 1.x prefers the httpx2 package and warns (an error under our filterwarnings) when only httpx,
which pyproject.toml lists, is installed. Both work; the warning is about packaging, not behaviour.
"""

from __future__ import annotations

import warnings

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient, WebSocketDenialResponse

__all__ = ["TestClient", "WebSocketDenialResponse"]
