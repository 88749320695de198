"""Real Mosquitto and InfluxDB 1.x servers for tests, each on a free loopback port, started and stopped here, and
`crowdflow serve` itself as a child process (tests, benchmarks and the screenshot script share it).

Never skipped: if a binary is missing, the test fails saying how to install it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
    )
    if path is None:
        raise RuntimeError(
            f"{name} is not installed; these tests need a real server. Install it with "
            f"`apt-get update && apt-get install -y {package}` (or run `make test`, which does)."
        )
    return path


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


@dataclass
class Server:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    config: Path
    argv: list[str]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def start(self) -> None:
        """(Re)start on the same port and data, e.g. for restart tests."""
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115  closed with the process
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, self.argv[0])


def start_mosquitto(workdir: Path, port: int | None = None, extra_conf: str = "") -> Server:
    binary = require_binary("mosquitto", "mosquitto")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        # As root, Mosquitto drops to user `mosquitto`, which cannot write pytest's tmp dirs; staying the
        # current user lets it save the persistent sessions that restart tests rely on.
        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "max_queued_messages 1000000\n"
        "max_inflight_messages 100\n"
        "log_type error\nlog_type warning\n"
        f"{extra_conf}"
    )
    argv = [binary, "-c", str(conf)]
    srv = Server("127.0.0.1", port, None, workdir, conf, argv)  # type: ignore[arg-type]
    srv.start()
    return srv


def start_influxdb(workdir: Path) -> Server:
    binary = require_binary("influxd", "influxdb")
    http_port, rpc_port = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc_port}"\n'
        f'[meta]\n  dir = "{workdir}/meta"\n'
        f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{http_port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
    )
    argv = [binary, "-config", str(conf)]
    srv = Server("127.0.0.1", http_port, None, workdir, conf, argv)  # type: ignore[arg-type]
    srv.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{srv.url}/ping", timeout=1) as r:
            if r.status == 204:
                return srv
        time.sleep(0.1)
    srv.stop()
    raise RuntimeError(f"influxd did not answer /ping on {srv.url}")


def influx_query(url: str, db: str, q: str) -> dict[str, object]:
    import json
    import urllib.parse

    qs = urllib.parse.urlencode({"db": db, "q": q})
    with urllib.request.urlopen(f"{url}/query?{qs}", timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


REPO = Path(__file__).resolve().parents[1]


class ServiceError(RuntimeError):
    """`crowdflow serve` did not start, or exited; the message carries the end of its log."""


@dataclass
class ServiceProcess:
    """`crowdflow serve --config <config>` as a child process, started and stopped like a deployment would."""

    config: Path
    http_port: int
    log: Path
    extra_argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServiceError("service not started")
        return self.proc.pid

    def start(self, timeout_s: float = 120.0) -> None:
        """Start and wait until it has subscribed (broker "connected" in /healthz): a message published
        earlier could reach a broker that has no session for the service yet. Then until its push process
        serves (relay "up"; 30 s at most, else ServiceError with its status and the log), so a page's first
        connection finds it."""
        out = self.log.open("ab")
        argv = [sys.executable, "-m", "crowdflow.cli", "serve", "--config", str(self.config), *self.extra_argv]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"crowdflow serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                if self.health().get("broker") == "connected":
                    self._wait_relay(max(30.0, deadline - time.monotonic()))
                    return
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"crowdflow serve did not subscribe within {timeout_s:.0f} s:\n{self.log_tail()}")

    def _wait_relay(self, timeout_s: float) -> None:
        """Until the push process serves (or the service runs without one); ServiceError saying why not."""
        deadline = time.monotonic() + timeout_s
        relay: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"crowdflow serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                relay = self.health().get("relay")
                if isinstance(relay, dict) and relay.get("state") in ("up", "off"):
                    return
            time.sleep(0.05)
        raise ServiceError(f"the push process did not serve within {timeout_s:.0f} s: {relay}\n{self.log_tail()}")

    @property
    def push_port(self) -> int | None:
        """The push process's port (its /ws), or None when the service runs without one; ServiceError if it has
        one that is not serving now (a test streaming from it would only time out, saying less)."""
        relay = self.health().get("relay")
        if not isinstance(relay, dict) or relay.get("state") == "off":
            return None
        if relay.get("state") != "up" or not isinstance(relay.get("port"), int):
            raise ServiceError(f"the push process is not serving: {relay}\n{self.log_tail()}")
        return int(relay["port"])

    def get(self, path: str, token: str | None = None, timeout_s: float = 5.0) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"{self.base}{path}", headers=headers)
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return json.loads(r.read())

    def health(self, timeout_s: float = 5.0) -> dict[str, Any]:
        body = self.get("/healthz", timeout_s=timeout_s)
        if not isinstance(body, dict):
            raise ValueError("/healthz did not answer a JSON object")
        return body

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the service flushes and saves its state), then kill if it hangs; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # in case a benchmark paused it
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no flush, no final snapshot."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, *, hard: bool = False) -> None:
        """Stop (SIGTERM; with `hard`, SIGKILL) and start again on the same port and data."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll `cond` on the running loop until it holds; fail saying `what` never happened."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(0.02)
