"""A tiny stand-in for InfluxDB 2.x's HTTP API: POST /api/v2/write and POST /api/v2/query only.

It records every request and answers writes from a script of status codes (then 204), so tests can check what
influxdb-client really sends, and how the store reacts to 5xx and 4xx answers.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeInflux2:
    write_script: list[tuple[int, str]] = field(default_factory=list)  # (status, body) answered in turn
    query_answer: str = ""
    version: str = "v2.7.11"  # X-Influxdb-Version on GET /ping
    requests: list[Request] = field(default_factory=list)
    port: int = 0  # 0: any free port; kept after start(), so stop() and start() again reuse it
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def writes(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == "/api/v2/write"]

    def lines(self) -> list[str]:
        """Lines of the writes that were answered 204."""
        with self.lock:
            return [
                ln
                for r in self.requests
                if r.path == "/api/v2/write" and r.headers.get("x-ok") == "1"
                for ln in r.body.decode().split("\n")
                if ln
            ]

    def start(self) -> FakeInflux2:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/ping":
                    self.send_response(204)
                    self.send_header("X-Influxdb-Version", fake.version)
                    self.send_header("X-Influxdb-Build", "OSS")
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(url.query))
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if url.path == "/api/v2/write":
                    with fake.lock:
                        status, text = fake.write_script.pop(0) if fake.write_script else (204, "")
                        headers["x-ok"] = "1" if status == 204 else "0"
                        fake.requests.append(Request(url.path, params, headers, body))
                    self.send_response(status)
                    payload = json.dumps({"code": "error", "message": text}).encode() if text else b""
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                elif url.path == "/api/v2/query":
                    with fake.lock:
                        fake.requests.append(Request(url.path, params, headers, body))
                    payload = fake.query_answer.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/csv; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
