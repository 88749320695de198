"""Starlette's TestClient, imported so its 'install httpx2' deprecation warning does not fail collection, and
pointed at http://127.0.0.1 (the app answers only to its allowed hosts: by default this machine's loopback
names, dashboard/guard.py).

Starlette >= 1.x prefers the httpx2 package and warns (an error under our filterwarnings) when only httpx,
which pyproject.toml lists, is installed. Both work; the warning is about packaging, not behaviour.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient as _StarletteClient
    from starlette.testclient import WebSocketDenialResponse

BASE_URL = "http://127.0.0.1"


class TestClient(_StarletteClient):
    __test__ = False  # not a test class, whatever its name

    def __init__(self, app: Any, base_url: str = BASE_URL, **kwargs: Any) -> None:
        super().__init__(app, base_url=base_url, **kwargs)

    def websocket_connect(self, url: str, subprotocols: Sequence[str] | None = None, **kwargs: Any) -> Any:
        # Starlette's joins a relative URL to ws://testserver whatever the base URL: use ours.
        base = str(self.base_url).replace("http", "ws", 1)
        return super().websocket_connect(urljoin(base, url), subprotocols, **kwargs)


__all__ = ["BASE_URL", "TestClient", "WebSocketDenialResponse"]
