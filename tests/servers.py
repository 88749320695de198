"""Real Mosquitto and InfluxDB 1.x servers for tests, each on a free loopback port, started and stopped here.

Never skipped: if a binary is missing, the test fails saying how to install it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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
