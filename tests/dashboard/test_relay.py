"""The push process (dashboard/pushserver.py) started and fed by the relay (dashboard/relay.py), for real: a child
process serving a port the relay bound, a hub in this test's loop, websocket clients over TCP.

The protocol is the main port's (tests/dashboard/test_stream.py); these check that it holds through the link:
tokens checked by the service (its failed-token limit included), snapshots then deltas with the hub's seq,
officers' zones, resume, Origin and Host, the restart of a dead push process, a stalled link's drops and
resync, a clean stop, no orphan when the service is SIGKILLed, and what the push process may see of the
service's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from dashboard import link
from dashboard.access import Access
from dashboard.auth import Principal, first_of, token_table, wall_tokens
from dashboard.hub import Hub
from dashboard.limits import RateLimit, RateLimiter
from dashboard.pushserver import PushSettings
from dashboard.relay import Relay, child_env
from domain.site import Site
from tests.dashboard.conftest import alert, zone_state
from tests.servers import until

WALL = "t-wall"
ANN = Principal(person="ann", name="Ann An", role="officer", zones=frozenset({"seg-1"}))


class Running:
    def __init__(self, hub: Hub, relay: Relay, port: int) -> None:
        self.hub, self.relay, self.port = hub, relay, port
        self.url = f"ws://127.0.0.1:{port}/ws"

    async def open(self, token: str | None = WALL, query: str = "", **kw: Any) -> ClientConnection:
        ws = await connect(self.url + query, open_timeout=10, **kw)
        if token is not None:
            await ws.send(json.dumps({"type": "auth", "token": token}))
        return ws


async def recv(ws: ClientConnection, timeout_s: float = 10.0) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return msg


async def recv_data(ws: ClientConnection) -> dict[str, Any]:
    """The next snapshot or delta (pings skipped)."""
    while True:
        msg = await recv(ws)
        if msg["type"] != "ping":
            return msg


@contextlib.asynccontextmanager
async def running(
    mini_site: Site, *, buffer_bytes: int = 8 * 1024 * 1024, failures: RateLimit | None = None,
    allowed_origins: list[str] | None = None, relay_class: type[Relay] = Relay, answer_timeout_s: float = 5.0,
    resume_bytes: int = 8_000_000,
) -> AsyncIterator[Running]:  # fmt: skip
    hub = Hub(mini_site, batch_interval_s=0, resume_bytes=resume_bytes)
    access = Access(
        first_of(token_table({"t-ann": ANN}), wall_tokens([WALL])),
        failures=RateLimiter(failures) if failures is not None else None,
    )
    relay = relay_class(
        hub, access, PushSettings(host="127.0.0.1", port=0, allowed_hosts=[], allowed_origins=allowed_origins,
                                  ping_interval_s=0.5, auth_timeout_s=2.0, answer_timeout_s=answer_timeout_s),
        buffer_bytes=buffer_bytes,
    )  # fmt: skip
    port = relay.listen()  # any free port, bound here and held: no other test can take it meanwhile
    relay.settings = msgspec.structs.replace(relay.settings, site_port=port - 1)
    hub.sinks.append(relay.send_delta)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await until(lambda: relay.state == "up", "the push process listening")
        yield Running(hub, relay, port)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_snapshot_then_deltas_with_the_hubs_seq_and_one_frame_per_delta(mini_site: Site) -> None:
    async with running(mini_site, relay_class=Gathering) as r:
        r.hub.update([zone_state("plaza", 200, capacity=1500)], None, [])
        walls = [await r.open() for _ in range(3)]
        for ws in walls:
            snap = await recv_data(ws)
            assert (snap["type"], snap["seq"], snap["epoch"]) == ("snapshot", 1, r.hub.epoch)
            assert next(z for z in snap["zones"] if z["id"] == "plaza")["occupancy"] == 200
        # Three walls let in together at one seq: one snapshot asked and encoded for all of them (those waiting
        # share the request; one coming after its answer, at the same seq, gets the snapshot kept).
        assert r.relay.snapshots == 1
        r.hub.update([zone_state("seg-1", 900)], None, [alert("a1")])
        for ws in walls:
            delta = await recv_data(ws)
            assert (delta["type"], delta["seq"]) == ("delta", 2)
            assert [z["id"] for z in delta["zones"]] == ["seg-1"] and delta["alerts"][0]["id"] == "a1"
        await until(lambda: r.hub.health()["clients"] == 3, "the push process's clients in /healthz")
        relay = r.hub.health()["clients"], r.relay.status()
        assert relay[1]["state"] == "up" and relay[1]["clients"] == 3 and relay[1]["link_drops"] == 0
        # Idle: pings from the push process, with the hub's seq.
        ping = await recv(walls[0])
        assert ping["type"] == "ping" and ping["seq"] == 2
        for ws in walls:
            await ws.close()


async def test_an_officer_gets_only_their_zones_cut_once_per_delta(mini_site: Site) -> None:
    async with running(mini_site) as r:
        phones = [await r.open("t-ann") for _ in range(4)]
        for ws in phones:
            snap = await recv_data(ws)
            assert {z["id"] for z in snap["zones"]} == {"seg-1"} and snap["site"]["zones"]
        r.hub.update([zone_state("seg-1", 900), zone_state("plaza", 300)], None,
                     [alert("a1", zone="seg-1"), alert("a2", zone="plaza")])  # fmt: skip
        for ws in phones:
            delta = await recv_data(ws)
            assert [z["id"] for z in delta["zones"]] == ["seg-1"] and [a["id"] for a in delta["alerts"]] == ["a1"]
        # The push process's stats come each second: until they count the four phones' deltas.
        await until(lambda: r.relay.stats.get("scope_hits", 0) >= 3, "the cut delta shared by the phones")
        stats = r.relay.stats
        # Four phones with the same zones: one cut of the delta (and one of their shared snapshot, at most
        # one per snapshot asked), the rest from the cache.
        assert stats["scope_cuts"] <= 1 + stats["snapshots_asked"] and stats["scope_hits"] >= 3, stats
        for ws in phones:
            await ws.close()


async def test_tokens_are_checked_by_the_service_with_its_failed_token_limit(mini_site: Site) -> None:
    async with running(mini_site, failures=RateLimit(burst=2, per_s=0.01)) as r:
        # A Bearer header works as on the main port.
        async with connect(r.url, additional_headers={"Authorization": f"Bearer {WALL}"}) as ok:
            assert (await recv_data(ok))["type"] == "snapshot"
        for _ in range(2):
            ws = await r.open("t-nobody")
            with pytest.raises(ConnectionClosed) as e:
                await recv(ws)
            assert e.value.rcvd is not None and e.value.rcvd.code == 4401
            assert "unknown or expired token" in e.value.rcvd.reason
        # The address must wait: not judged, so 1013 Try Again Later, even for a good token (the page keeps it).
        for token in ("t-nobody", WALL):
            ws = await r.open(token)
            with pytest.raises(ConnectionClosed) as e:
                await recv(ws)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1013
            assert "too many unknown tokens" in e.value.rcvd.reason
        assert r.relay.access.failed == 2 and r.relay.access.held_back == 2  # the service's own counters


class Gathering(Relay):
    """Answers token checks only once three are waiting: those clients then want their snapshots together."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.held: list[bytes] = []

    def _handle(self, kind: bytes, body: bytes) -> None:
        if kind != link.AUTH:
            super()._handle(kind, body)
            return
        self.held.append(body)
        if len(self.held) == 3:
            for held in self.held:
                super()._handle(kind, held)
            self.held.clear()


class Unanswering(Relay):
    """A service too busy to answer the push process's first token check (in its answer_timeout_s)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ignored = 0

    def _handle(self, kind: bytes, body: bytes) -> None:
        if kind == link.AUTH and self.ignored == 0:
            self.ignored += 1
            return
        super()._handle(kind, body)


async def test_a_token_check_not_answered_in_time_is_try_again_later_not_refused(mini_site: Site) -> None:
    async with running(mini_site, relay_class=Unanswering, answer_timeout_s=0.3) as r:
        ws = await r.open()
        with pytest.raises(ConnectionClosed) as e:
            await recv(ws)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1013, e.value.rcvd
        assert "did not check the token in time: try again" in e.value.rcvd.reason
        again = await r.open()  # the same token, a moment later: it was never refused
        assert (await recv_data(again))["type"] == "snapshot"
        await again.close()


async def three_deltas_after_a_snapshot(r: Running) -> dict[str, Any]:
    """A client takes a snapshot and leaves; three deltas follow, through the link. The snapshot it took."""
    ws = await r.open()
    snap: dict[str, Any] = await recv_data(ws)
    await ws.close()
    for i in range(3):
        r.hub.update([zone_state("plaza", 100 + i)], None, [])
    await until(lambda: r.relay.stats.get("seq") == 3, "the deltas through the link")
    return snap


async def test_resume_within_the_window_and_a_snapshot_after_it(mini_site: Site) -> None:
    async with running(mini_site) as r:
        snap = await three_deltas_after_a_snapshot(r)
        again = await r.open(query=f"?epoch={snap['epoch']}&seq={snap['seq']}")
        got = [await recv_data(again) for _ in range(3)]
        assert [(m["type"], m["seq"]) for m in got] == [("delta", 1), ("delta", 2), ("delta", 3)]
        await again.close()
        other = await r.open(query="?epoch=another-run&seq=2")
        assert (await recv_data(other))["type"] == "snapshot"
        await other.close()


async def test_the_push_processs_resume_window_is_bounded_in_bytes_as_the_hubs(mini_site: Site) -> None:
    async with running(mini_site, resume_bytes=1) as r:  # only the newest delta is kept, whatever its size
        snap = await three_deltas_after_a_snapshot(r)
        behind = await r.open(query=f"?epoch={snap['epoch']}&seq={snap['seq']}")
        assert (await recv_data(behind))["type"] == "snapshot"  # three deltas no longer held
        await behind.close()
        near = await r.open(query=f"?epoch={snap['epoch']}&seq=2")
        assert [(m["type"], m["seq"]) for m in [await recv_data(near)]] == [("delta", 3)]
        await near.close()


async def test_origin_and_host_are_checked(mini_site: Site) -> None:
    async with running(mini_site) as r:
        main_site = f"http://127.0.0.1:{r.port - 1}"  # the dashboard's port: another port, the same host
        ws = await r.open(origin=Origin(main_site))
        assert (await recv_data(ws))["type"] == "snapshot"
        await ws.close()
        with pytest.raises(InvalidStatus) as e:
            await r.open(origin=Origin("http://evil.example"))
        assert e.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as e:
            await connect(f"ws://evil.example:{r.port}/ws", host="127.0.0.1", port=r.port, open_timeout=10)
        assert e.value.response.status_code == 400
    async with running(mini_site, allowed_origins=["https://wall.example"]) as r:
        # The configured origins, and the dashboard's own pages (its port, on the host name the page asks the
        # push port by: stream.js uses the page's own host name).
        for origin in ("https://wall.example", f"http://127.0.0.1:{r.port - 1}"):
            ws = await r.open(origin=Origin(origin))
            assert (await recv_data(ws))["type"] == "snapshot", origin
            await ws.close()
        ws = await connect(f"ws://localhost:{r.port}/ws", host="127.0.0.1", port=r.port, open_timeout=10,
                           origin=Origin(f"http://localhost:{r.port - 1}"))  # fmt: skip
        await ws.send(json.dumps({"type": "auth", "token": WALL}))
        assert (await recv_data(ws))["type"] == "snapshot"
        await ws.close()
        for origin in (f"http://127.0.0.1:{r.port + 7}", "http://evil.example", f"http://evil.example:{r.port - 1}",
                       f"http://localhost:{r.port - 1}"):  # fmt: skip  (the last: not the Host asked)
            with pytest.raises(InvalidStatus):
                await r.open(origin=Origin(origin))


async def test_a_dead_push_process_is_restarted_and_its_clients_reconnect(mini_site: Site) -> None:
    async with running(mini_site) as r:
        ws = await r.open()
        await recv_data(ws)
        pid = r.relay.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            while True:
                await recv(ws)
        # Meanwhile a wall connects: the service's socket holds it for the next push process.
        waiting = asyncio.create_task(r.open())
        await until(lambda: r.relay.state == "up" and r.relay.pid != pid, "a new push process", 30)
        assert r.relay.restarts == 1 and r.relay.status()["last_exit"] == -signal.SIGKILL
        assert r.relay.port == r.port  # the same socket: nothing to race for
        early = await asyncio.wait_for(waiting, 30)
        assert (await recv_data(early))["type"] == "snapshot"
        await early.close()
        r.hub.update([zone_state("plaza", 321)], None, [])
        again = await r.open()
        snap = await recv_data(again)
        assert snap["seq"] == r.hub.seq and next(z for z in snap["zones"] if z["id"] == "plaza")["occupancy"] == 321
        await again.close()


async def test_a_stalled_push_process_costs_drops_not_memory_then_its_clients_resync(mini_site: Site) -> None:
    async with running(mini_site, buffer_bytes=64 * 1024) as r:
        ws = await r.open()
        await recv_data(ws)
        pid = r.relay.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            big = [zone_state(z, 100 + i) for i, z in enumerate(mini_site.zones)]
            for i in range(3000):
                big = [zone_state(s.zone, s.occupancy + 1) for s in big]
                r.hub.update(big, None, [alert(f"a{i % 50}", state="raised", ts=1e9 + i)])
            status = r.relay.status()
            assert status["link_drops"] > 0, status
            # Bounded: what waits on the link never passes its bound by more than one frame.
            assert status["link_buffered_bytes"] <= 64 * 1024 + 16 * 1024, status
        finally:
            os.kill(pid, signal.SIGCONT)
        r.hub.update([zone_state("plaza", 777)], None, [])
        await until(lambda: r.relay.link_resyncs >= 1, "the resync after the link drained")
        # The wall gets a snapshot (its backlog could not be completed from deltas) showing the latest.
        while True:
            msg = await recv_data(ws)
            if msg["type"] == "snapshot":
                break
        # From there it follows in order to the hub's seq, where plaza shows 777.
        plaza, seq = next(z for z in msg["zones"] if z["id"] == "plaza")["occupancy"], msg["seq"]
        while seq < r.hub.seq:
            msg = await recv_data(ws)
            assert msg["type"] == "snapshot" or msg["seq"] == seq + 1, (msg["type"], msg["seq"], seq)
            plaza = next((z["occupancy"] for z in msg["zones"] if z["id"] == "plaza"), plaza)
            seq = msg["seq"]
        assert (seq, plaza) == (r.hub.seq, 777)
        await until(lambda: r.relay.stats.get("link_resyncs", 0) >= 1, "the push process counted the resync")
        await ws.close()


async def test_the_push_process_gets_none_of_the_services_secrets(
    mini_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROWDFLOW_DASHBOARD_API_TOKEN", "t-secret-api")
    monkeypatch.setenv("CROWDFLOW_MQTT_PASSWORD", "s3cret-mqtt")
    monkeypatch.setenv("SOME_CLOUD_SECRET_KEY", "s3cret-cloud")
    monkeypatch.setenv("LC_TIME", "C")
    async with running(mini_site) as r:
        raw = Path(f"/proc/{r.relay.pid}/environ").read_bytes()  # noqa: ASYNC240  a tiny /proc file
        env = dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)
        ws = await r.open()
        assert (await recv_data(ws))["type"] == "snapshot"  # it runs without them
        await ws.close()
    assert not [k for k in env if k.startswith("CROWDFLOW_")], env
    assert "SOME_CLOUD_SECRET_KEY" not in env and not any("s3cret" in v for v in env.values()), env
    assert env["LC_TIME"] == "C" and env["PATH"] == os.environ["PATH"] and "PYTHONPATH" in env


async def test_stopping_closes_clients_with_1001_and_the_process_exits(mini_site: Site) -> None:
    async with running(mini_site) as r:
        ws = await r.open()
        await recv_data(ws)
        pid = r.relay.pid
    with pytest.raises(ConnectionClosed) as e:
        while True:
            await recv(ws)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1001
    assert pid is not None and r.relay.state == "off" and r.relay.restarts == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_push_process_stopped_with_its_service_is_not_logged_as_a_failure(
    mini_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """systemd sends SIGTERM to the whole group: the push process exits 0 a moment before the service stops."""
    async with running(mini_site) as r:
        pid = r.relay.pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        await until(lambda: r.relay.state != "up", "the push process gone")
    assert r.relay.restarts == 0 and not [m for m in caplog.messages if "exited" in m], caplog.messages


async def test_a_push_process_that_keeps_failing_degrades_healthz(mini_site: Site) -> None:
    hub = Hub(mini_site, batch_interval_s=0)
    hub.note_data(hub.clock.now())
    relay = Relay(hub, Access(wall_tokens([WALL])),
                  PushSettings(host="127.0.0.1", port=0, allowed_hosts=[], allowed_origins=None),
                  argv=lambda link_fd, listen_fd: [sys.executable, "-c", "raise SystemExit(3)"])  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    def reasons() -> list[str]:
        hub.set_status("relay", relay.status())  # as the service does each second
        found: list[str] = hub.health()["reasons"]
        return found

    try:
        await until(lambda: any("push process not serving" in m for m in reasons()), "/healthz degraded", 60)
        assert hub.health()["status"] == "degraded" and relay.restarts >= 1 and relay.last_exit == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_a_taken_push_port_fails_at_listen(mini_site: Site) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        relay = Relay(Hub(mini_site), Access(wall_tokens([WALL])),
                      PushSettings(host="127.0.0.1", port=port, allowed_hosts=[], allowed_origins=None))  # fmt: skip
        with pytest.raises(OSError):
            relay.listen()


def test_a_push_process_that_cannot_serve_says_why_in_one_line() -> None:
    """Not a traceback on every retry: one log line, exit code 3 (the service restarts it with backoff)."""
    ours, theirs = socket.socketpair()
    hello = {"epoch": "e", "seq": 0, "client_queue": 8, "host": "127.0.0.1", "port": 0, "allowed_hosts": [],
             "allowed_origins": None}  # fmt: skip
    ours.sendall(link.json_frame(link.HELLO, hello))
    with ours, theirs, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as not_a_listener:
        for listen_fd in (not_a_listener.fileno(), 987):  # a socket uvicorn cannot serve; no socket at all
            done = subprocess.run(
                [sys.executable, "-m", "dashboard.pushserver", "--link-fd", str(theirs.fileno()),
                 "--listen-fd", str(listen_fd)],
                pass_fds=(theirs.fileno(), not_a_listener.fileno()), capture_output=True, text=True, timeout=60,
                env=child_env(os.environ),
            )  # fmt: skip
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 3 and len(lines) == 1, done.stderr
            assert "ERROR crowdflow.push: push process" in lines[0], lines


ORPHAN_SCRIPT = """
import asyncio, sys
from dashboard import link
from dashboard.access import Access
from dashboard.auth import wall_tokens
from dashboard.hub import Hub
from dashboard.pushserver import PushSettings
from dashboard.relay import Relay, child_env
from domain.loader import load_site

async def main():
    hub = Hub(load_site(sys.argv[1]))
    relay = Relay(hub, Access(wall_tokens(["t"])), PushSettings(host="127.0.0.1", port=0,
                  allowed_hosts=[], allowed_origins=None))
    task = asyncio.create_task(relay.run(asyncio.Event()))
    while relay.state != "up":
        await asyncio.sleep(0.02)
    print(relay.pid, flush=True)
    await task

asyncio.run(main())
"""


def test_the_push_process_exits_when_the_service_is_killed(tmp_path: Any) -> None:
    """SIGKILL gives the service no chance to stop its child: the link's end-of-file does."""
    from tests.conftest import FIXTURES

    service = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(FIXTURES / "mini_site.toml")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert service.stdout is not None
        child = int(service.stdout.readline())
        service.kill()
        service.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            # A zombie is gone for our purposes (its parent, now dead, cannot reap it; init will).
            with contextlib.suppress(OSError), open(f"/proc/{child}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the push process outlived its killed service")
    finally:
        if service.poll() is None:
            service.kill()
