"""The service's side of the push process: starts and supervises it, and feeds it the hub's deltas.

Every websocket send costs CPU per client; on the service's loop, 2,000 idle walls more than doubled the CPU
each ingested message takes (benchmarks/RESULTS.md, Faults). So the /ws fan-out runs in a child process
(dashboard/pushserver.py), and the service's cost per delta is one frame written to a local link, whatever
the number of clients. The hub stays the one source of truth: views, seq and epoch are its own; the push
process asks for snapshots and for every token check (dashboard/access.py: the roster, the officers' zones,
the failed-token limit) over the link.

- The link is bounded: when the push process stalls and `buffer_bytes` are waiting, deltas are dropped (and
  counted) rather than held; once it drains, a resync frame sends each of its clients a snapshot.
- The service binds the push port itself (`listen`, at startup: a taken port fails there, once, with a
  message) and hands the listening socket to each push process: a restart never races anyone for the port,
  and connections made while none runs wait in the socket's backlog for the next one.
- The push process is restarted when it exits, after 0.5 s, doubling to 30 s while it keeps failing; one
  that ran for a minute starts the count over. At shutdown its link is closed, it closes its sockets (1001)
  and exits; if it does not within `stop_timeout_s`, it is terminated, then killed.
- /healthz "relay": state (starting, up, down, off), port, pid, restarts, its clients and their resyncs,
  deltas dropped on the link and the resyncs that followed, snapshots and token checks served, and
  `down_for_s` (not serving for; past a few seconds the hub reports the service degraded: Hub.health).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from dashboard import link
from dashboard.access import Access
from dashboard.auth import Principal
from dashboard.hub import Hub
from dashboard.pushserver import PushSettings

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a push process that ran this long was not failing: the backoff starts over
BEAT_S = 1.0
CLEAN_EXIT_GRACE_S = 2.0  # a push process that exited 0 (a stop signal to the group): the service's stop follows

_decoder = msgspec.json.Decoder()


def child_argv(link_fd: int, listen_fd: int) -> list[str]:
    return [sys.executable, "-m", "dashboard.pushserver", "--link-fd", str(link_fd), "--listen-fd", str(listen_fd)]


class Relay:
    """Supervises one push process at a time; `send_delta` is the hub's sink (Hub.sinks)."""

    def __init__(
        self,
        hub: Hub,
        access: Access,
        settings: PushSettings,
        *,
        buffer_bytes: int = 8 * 1024 * 1024,
        stop_timeout_s: float = 5.0,
        argv: Callable[[int, int], Sequence[str]] = child_argv,
    ) -> None:
        self.hub = hub
        self.access = access
        self.settings = settings
        self.buffer_bytes = buffer_bytes
        self.stop_timeout_s = stop_timeout_s
        self._argv = argv
        self._writer: asyncio.StreamWriter | None = None
        self._needs_resync = False
        self.state = "starting"
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.link_drops = 0  # deltas not written: the push process was not reading
        self.link_resyncs = 0  # resync frames sent after drops
        self.snapshots = 0  # snapshots encoded for the push process
        self.auths = 0  # token checks answered
        self.stats: dict[str, Any] = {}  # the push process's own, each second
        self._listener: socket.socket | None = None
        self.port = settings.port  # the bound one once listening (settings.port 0: any free port)
        self._not_up_since: float | None = time.monotonic()  # None while up

    def listen(self) -> int:
        """Bind the push port, once; the port. OSError if it cannot be bound (taken, not allowed)."""
        if self._listener is None:
            host = self.settings.host
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, self.settings.port), family=family, backlog=2048)
            sock.set_inheritable(False)  # only the push process gets it (pass_fds), not other children
            self._listener = sock
            self.port = int(sock.getsockname()[1])
        return self.port

    @property
    def up(self) -> bool:
        return self.state == "up"

    def _set_state(self, state: str) -> None:
        if state == "up":
            self._not_up_since = None
        elif self._not_up_since is None:
            self._not_up_since = time.monotonic()
        self.state = state

    # -- the hub's sink --------------------------------------------------------------------------------

    def send_delta(self, seq: int, text: str) -> None:
        """One delta, one frame, whatever the number of clients; dropped if the link is full."""
        writer = self._writer
        if writer is None:
            return  # no push process now: the next one starts from a snapshot anyway
        if self._needs_resync and not self._resync(writer, seq - 1):
            self.link_drops += 1
            return
        data = link.text_frame(link.DELTA, seq, text)
        if writer.transport.get_write_buffer_size() + len(data) > self.buffer_bytes:
            self.link_drops += 1
            if not self._needs_resync:
                log.warning("push process not reading its link: deltas dropped, its clients will get snapshots")
            self._needs_resync = True
            return
        writer.write(data)

    def _resync(self, writer: asyncio.StreamWriter, seq: int) -> bool:
        """Send the resync frame (seq: the hub's seq before the next delta written) if the link has drained
        to half; whether it went."""
        if writer.transport.get_write_buffer_size() > self.buffer_bytes // 2:
            return False
        writer.write(link.json_frame(link.RESYNC, {"seq": seq}))
        self._needs_resync = False
        self.link_resyncs += 1
        return True

    def _control(self, data: bytes) -> None:
        """An answer the push process asked for: written unless the link is far past its bound (the push
        process asks again, or its client times out)."""
        writer = self._writer
        if writer is None or writer.transport.get_write_buffer_size() > 4 * self.buffer_bytes:
            return
        writer.write(data)

    # -- supervision ----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a push process running until `stop`; then stop it cleanly."""
        self._not_up_since = time.monotonic()  # counted from here: the service may take a while to get here
        try:
            self.listen()
        except OSError as e:  # the service binds it at startup; here for a Relay run on its own (tests)
            log.error("push port %s:%s cannot be bound (%s): no push process", self.settings.host, self.port, e)
            self._set_state("down")
            await stop.wait()
            self.state = "off"
            return
        backoff = BACKOFF_MIN_S
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    code = await self._run_once(stop)
                except Exception:  # never let the supervisor die: the service would lose its walls for good
                    log.exception("push process supervisor failed; restarting the push process")
                    code = None
                if code == 0 and not stop.is_set():
                    # A clean exit is a stop (SIGTERM to the whole process group, as systemd does): the
                    # service's own stop follows at once; not a failure to log.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), CLEAN_EXIT_GRACE_S)
                if stop.is_set():
                    break
                self.restarts += 1
                self.last_exit = code
                self._set_state("down")
                if time.monotonic() - started >= HEALTHY_AFTER_S:
                    backoff = BACKOFF_MIN_S
                log.warning("push process exited (code %s); restarting in %.1f s", code, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            self.state = "off"
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    async def _run_once(self, stop: asyncio.Event) -> int | None:
        listener = self._listener
        if listener is None:
            raise RuntimeError("Relay.listen() first: the push process serves the service's listening socket")
        ours, theirs = socket.socketpair()
        try:
            fds = (theirs.fileno(), listener.fileno())
            proc = await asyncio.create_subprocess_exec(
                *self._argv(*fds), pass_fds=fds, env=child_env(os.environ), stdin=asyncio.subprocess.DEVNULL
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child has its copy: our end sees EOF when the child is gone
        self.pid = proc.pid
        self._set_state("starting")
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        except BaseException:  # no link, no use for the process: end it rather than leave it unwaited
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        self._writer = writer
        self._needs_resync = False
        hub = self.hub
        hello = {"epoch": hub.epoch, "seq": hub.seq, "client_queue": hub.client_queue,
                 "resume_bytes": hub.resume_bytes, **msgspec.to_builtins(self.settings)}  # fmt: skip
        writer.write(link.json_frame(link.HELLO, hello))
        reading = asyncio.create_task(self._read(reader), name="relay-read")
        beating = asyncio.create_task(self._beat(), name="relay-beat")
        exited = asyncio.create_task(proc.wait(), name="relay-wait")
        stopping = asyncio.create_task(stop.wait(), name="relay-stop")
        try:
            await asyncio.wait({exited, stopping, reading}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._writer = None
            self._forget_clients()
            beating.cancel()
            stopping.cancel()
            writer.close()  # the push process reads end-of-file: it closes its sockets and exits
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            await self._end(proc, exited)
            reading.cancel()
            await asyncio.gather(reading, beating, stopping, return_exceptions=True)
        return proc.returncode

    async def _end(self, proc: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), self.stop_timeout_s)
            return
        log.warning("push process %d did not exit after its link closed; terminating it", proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), 5.0)
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await exited

    def _forget_clients(self) -> None:
        self.hub.remote_clients = 0
        self.hub.remote_resyncs = 0
        self.stats = {}
        self._set_state("down")

    async def _beat(self) -> None:
        """Each second: the hub's seq, clock and data age (the push process's pings), and a pending resync."""
        while True:
            writer = self._writer
            if writer is not None:
                hub = self.hub
                if self._needs_resync:
                    self._resync(writer, hub.seq)
                self._control(link.json_frame(link.BEAT, {"seq": hub.seq, "now": hub.clock.now(),
                                                          "age": hub.last_data_age_s()}))  # fmt: skip
            await asyncio.sleep(BEAT_S)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                kind, body = await link.read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            try:
                self._handle(kind, body)
            except (ValueError, TypeError, KeyError, msgspec.DecodeError) as e:
                log.warning("unreadable frame %r from the push process (%s)", kind, type(e).__name__)

    def _handle(self, kind: bytes, body: bytes) -> None:
        if kind == link.SNAPSHOT_PLEASE:
            # One encode per request; the push process asks once for every client waiting at this seq.
            self.snapshots += 1
            self._control(link.text_frame(link.SNAPSHOT, self.hub.seq, self.hub.snapshot_text()))
        elif kind == link.AUTH:
            ask = _decoder.decode(body)
            token, address = ask.get("token"), ask.get("address")
            found = self.access.authenticate_token(
                token if isinstance(token, str) else None, address if isinstance(address, str) else "unknown"
            )
            self.auths += 1
            answer: dict[str, Any] = {"id": ask.get("id")}
            if isinstance(found, Principal):
                answer["principal"] = msgspec.to_builtins(found)
            else:
                answer["reason"], answer["temporary"] = found.reason, found.temporary
            self._control(link.json_frame(link.AUTH_ANSWER, answer))
        elif kind == link.STATS:
            stats = _decoder.decode(body)
            if isinstance(stats, dict):
                self.stats = stats
                self.hub.remote_clients = int(stats.get("clients", 0))
                self.hub.remote_resyncs = int(stats.get("resyncs", 0))
        elif kind == link.READY:
            self._set_state("up")
            log.info("push process %s serving /ws on port %s", self.pid, self.port)
        else:
            raise ValueError(f"unknown frame kind {kind!r}")

    def status(self) -> dict[str, Any]:
        """What /healthz shows as "relay"."""
        writer = self._writer
        since = self._not_up_since
        return {
            "state": self.state,
            "down_for_s": None if since is None or self.state == "off" else round(time.monotonic() - since, 1),
            "port": self.port,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "clients": self.hub.remote_clients,
            "resyncs": self.hub.remote_resyncs,
            "link_drops": self.link_drops,
            "link_resyncs": self.link_resyncs,
            "link_buffered_bytes": writer.transport.get_write_buffer_size() if writer is not None else 0,
            "snapshots": self.snapshots,
            "token_checks": self.auths,
            "process": self.stats,
        }


# What the push process may see of the service's environment: enough to run Python and format times. Not the
# service's secrets (CROWDFLOW_*: the API and MQTT passwords, tokens): it faces the internet, holds no token,
# and asks the service for every check.
CHILD_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
             "PYTHONUNBUFFERED", "VIRTUAL_ENV")  # fmt: skip


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The push process's environment: CHILD_ENV and LC_* from `environ`, PYTHONPATH with this code base."""
    env = {k: v for k, v in environ.items() if k in CHILD_ENV or k.startswith("LC_")}
    env["PYTHONPATH"] = _with_repo(environ.get("PYTHONPATH", ""))
    return env


def _with_repo(pythonpath: str) -> str:
    """The push process imports this code base whatever the service's working directory."""
    root = str(Path(__file__).resolve().parents[1])
    parts = [p for p in pythonpath.split(os.pathsep) if p]
    return os.pathsep.join([root, *[p for p in parts if p != root]])
