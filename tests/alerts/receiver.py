"""A real HTTP receiver on a free loopback port for delivery tests: webhook, ntfy, Gotify or push endpoint.

Responses are scripted per path, consumed in order, the last one repeating: `script("/hook", 503, 503, 200)`;
`script("/bad", 400)`; `script("/slow", HANG)` holds the request open until the receiver stops. Unscripted
paths answer 200; 429 and 503 come with "Retry-After: 7". Every request is kept (method, path, headers,
body) in arrival order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

HANG: Final = "hang"
Reply = int | str  # an HTTP status, or HANG


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self._requests: list[Request] = []
        self._release = threading.Event()
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, scheme: str, path: str = "") -> str:
        """E.g. url("json", "/hook") -> "json://127.0.0.1:PORT/hook"."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def wait_until(self, ok: Callable[[Receiver], bool], timeout_s: float = 10.0) -> None:
        """Block until `ok(self)` holds (checked as requests arrive); TimeoutError after `timeout_s`."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: ok(self), timeout_s):
                raise TimeoutError(
                    f"receiver: condition not met within {timeout_s} s; got {len(self.requests)} requests"
                )

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let hanging handlers go
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            replies = self._scripts.get(path)
            if not replies:
                return 200
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver._requests.append(Request(self.command, self.path, headers, body))
                with receiver._arrived:
                    receiver._arrived.notify_all()
                reply = receiver._next_reply(self.path.split("?")[0])
                if reply == HANG:
                    receiver._release.wait(30)
                    self.close_connection = True
                    return
                status = int(reply)
                # ntfy-style error body: a five-digit code whose first three digits are the HTTP status
                error = {"error": "scripted", "code": status * 100 + 1}
                payload = b'{"id": 1}' if status < 300 else json.dumps(error).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status in (429, 503):
                    self.send_header("Retry-After", "7")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        return Handler
