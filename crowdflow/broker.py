"""Mosquitto for crowdflow: the users, ACL, password file and test certificates of a site, the shipped broker
configuration (deploy/mosquitto/mosquitto.conf) rendered for a local run, and Mosquitto child processes.

- `EmbeddedBroker`: anonymous, loopback only; for tools that need any broker (scripts/screenshots.py).
- `SecureBroker`: the shipped configuration with a site's credentials (authentication, ACL, TLS); what
  `crowdflow demo` runs, so the demo shows the real configuration working.
- `write_credentials`: what `crowdflow mqtt-credentials` writes for an operator (docs/mqtt-security.md).

Mosquitto rather than a pure-Python broker: amqtt is ~7x slower and pins an old `websockets` (DESIGN.md §5).
Secrets are written to files readable by their owner only; none is ever printed, logged or put on a command
line (`mosquitto_passwd -U` hashes a file in place, where `-b` would show passwords to `ps`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from domain.messages import (
    ALERT_TOPIC_PREFIX,
    DEADLETTER_TOPIC,
    SIM_CLOCK_TOPIC,
    STATE_TOPIC_PREFIX,
    SUBSCRIPTION,
    TOPIC_PREFIX,
)
from domain.site import Site

SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "mosquitto.conf"
INSTALL_DIR = "/etc/mosquitto/crowdflow/"  # where the shipped config expects passwd, acl and certs/

SERVICE_USER = "crowdflow"
PUBLISHER_USER = "crowdflow-out"  # the service's second connection (alerts, dead letters): its own user, as
# the shipped config ties each connection's client id to its user name (use_username_as_clientid)
SIMULATOR_USER = "crowdflow-sim"
READER_USER = "alerts-reader"

# Readings older than this are rejected by ingest (timestamp_out_of_range): queueing more is useless.
OUTAGE_HOURS = 6.0
QUEUE_HEADROOM = 1.5  # status messages, bursts after reconnects

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # no ':' (password file), '+#/' (topics), spaces (ACL)


class BrokerError(RuntimeError):
    pass


class CredentialsError(ValueError):
    pass


def find_binary(name: str, package: str, why: str) -> str:
    for cand in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/usr/local/sbin/{name}"):
        if cand and Path(cand).exists():
            return cand
    raise BrokerError(
        f"{name} is not installed, and {why}. Install it with `sudo apt-get install -y {package}`"
        + (" (make demo does this)" if package == "mosquitto" else "")
        + "."
    )


def find_mosquitto() -> str:
    return find_binary(
        "mosquitto",
        "mosquitto",
        "the demo needs an MQTT broker; or point crowdflow at a broker with --mqtt-host/--mqtt-port",
    )


def free_port(preferred: int | None = None) -> int:
    if preferred:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- users and ACL -----------------------------------------------------------------------------------------

Role = Literal["service", "publisher", "simulator", "reader", "sensor"]


@dataclass(frozen=True)
class MqttUser:
    name: str
    role: Role
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


def sensor_topics(sensor: str) -> str:
    """A sensor's topics: any grid, zone and kind, but its own id. Grid, zone and kind are checked by the
    service, which dead-letters a wrong one with the topic to use (topic_mismatch, wrong_kind); the broker
    would drop it without a word."""
    return f"{TOPIC_PREFIX}/+/+/{sensor}/+"


def site_users(
    site: Site,
    *,
    service: str = SERVICE_USER,
    readers: Sequence[str] = (READER_USER,),
    simulator: str | None = None,
    publisher: str = PUBLISHER_USER,
) -> list[MqttUser]:
    """Every user of a site's broker with what it may read and write (docs/mqtt-security.md)."""
    users = [
        MqttUser(service, "service", read=(SUBSCRIPTION, SIM_CLOCK_TOPIC)),
        MqttUser(
            publisher, "publisher", write=(f"{ALERT_TOPIC_PREFIX}/#", DEADLETTER_TOPIC, f"{STATE_TOPIC_PREFIX}/#")
        ),
    ]
    if simulator:
        # Publishes for every sensor (a gateway) and the simulated clock: test benches and demos only.
        users.append(MqttUser(simulator, "simulator", write=(SUBSCRIPTION, SIM_CLOCK_TOPIC)))
    users += [MqttUser(r, "reader", read=(f"{ALERT_TOPIC_PREFIX}/#",)) for r in readers]
    users += [MqttUser(s, "sensor", write=(sensor_topics(s),)) for s in site.sensors]
    seen: dict[str, Role] = {}
    for u in users:
        if not _NAME.fullmatch(u.name):
            raise CredentialsError(
                f"{u.role} '{u.name}' cannot be an MQTT user name: use letters, digits, '.', '_' and '-' "
                "(at most 64, no ':', '+', '#', '/' or spaces)"
            )
        if u.name in seen:
            raise CredentialsError(
                f"'{u.name}' is both a {seen[u.name]} and a {u.role}: each MQTT user needs its own name "
                "(rename the service, reader or simulator user)"
            )
        seen[u.name] = u.role
    return users


def acl_text(users: Iterable[MqttUser], source: str = "") -> str:
    """Mosquitto acl_file text: explicit rules per user, no `pattern` lines (a pattern applies to every user,
    the service and the readers included)."""
    lines = [
        "# Mosquitto ACL for crowdflow, written by `crowdflow mqtt-credentials`"
        + (f" from {source}" if source else ""),
        "# Regenerate it when sensors change; do not edit by hand. Anything not listed is denied.",
        "# Rules before the first `user` line would apply to anonymous clients: there are none.",
    ]
    for u in users:
        lines += ["", f"# {u.role}", f"user {u.name}"]
        lines += [f"topic read {t}" for t in u.read]
        lines += [f"topic write {t}" for t in u.write]
    return "\n".join(lines) + "\n"


def outage_queue_size(site: Site, hours: float = OUTAGE_HOURS, headroom: float = QUEUE_HEADROOM) -> int:
    """max_queued_messages for the service's session: the site's readings in `hours`, with headroom,
    rounded up to a thousand."""
    per_hour = sum(3600.0 / s.interval_s for s in site.sensors.values())
    return max(1000, math.ceil(per_hour * hours * headroom / 1000) * 1000)


# --- secrets, password file, certificates ------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Credentials:
    """What `write_credentials` wrote in `dir`: passwd, acl, certs/ and secrets/<user>.password."""

    dir: Path
    users: tuple[MqttUser, ...]
    queue_size: int
    tls: TlsFiles | None
    created: tuple[str, ...] = ()  # users given a new password in this run
    removed: tuple[str, ...] = ()  # users dropped because they are no longer in the site

    @property
    def passwd(self) -> Path:
        return self.dir / "passwd"

    @property
    def acl(self) -> Path:
        return self.dir / "acl"

    def password_file(self, user: str) -> Path:
        return self.dir / "secrets" / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text(encoding="utf-8").strip()

    def user(self, role: Role) -> str:
        """The first user with this role."""
        for u in self.users:
            if u.role == role:
                return u.name
        raise CredentialsError(f"no {role} user in {self.dir}")


def _write_private(path: Path, text: str) -> None:
    """Create or replace `path` readable by its owner only, never world-readable for an instant."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)


def write_password_file(path: Path, passwords: dict[str, str]) -> None:
    """A Mosquitto password file (sha512-pbkdf2 hashes) for `passwords`: the plain text goes to a private file
    that `mosquitto_passwd -U` hashes in place, then replaces `path`."""
    binary = find_binary("mosquitto_passwd", "mosquitto", "crowdflow needs it to hash the broker's passwords")
    plain = path.with_name(f".{path.name}.plain")
    _write_private(plain, "".join(f"{user}:{pw}\n" for user, pw in passwords.items()))
    try:
        done = subprocess.run([binary, "-U", str(plain)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(f"mosquitto_passwd -U failed ({done.returncode}): {done.stderr.strip()}")
        plain.replace(path)
    finally:
        plain.unlink(missing_ok=True)


def make_test_certs(certs: Path, hosts: Sequence[str], days: int = 825) -> TlsFiles:
    """A private CA and a server certificate for `hosts` (names and IP addresses the clients connect to),
    with openssl; self-signed, for tests and trials. Production: a certificate from the site's own CA."""
    openssl = find_binary("openssl", "openssl", "crowdflow needs it to make TLS test certificates")
    certs.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(certs / "ca.crt", certs / "server.crt", certs / "server.key")
    ca_key = certs / "ca.key"
    sans = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    ext = certs / "server.ext"
    ext.write_text(
        f"subjectAltName={sans}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *ec, "-keyout", ca_key, "-out", files.ca_file, "-days", str(days),
         "-subj", "/CN=crowdflow MQTT test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *ec, "-keyout", files.key_file, "-out", certs / "server.csr", "-subj", f"/CN={hosts[0]}"],
        [openssl, "x509", "-req", "-in", certs / "server.csr", "-CA", files.ca_file, "-CAkey", ca_key,
         "-CAcreateserial", "-out", files.cert_file, "-days", str(days), "-extfile", ext],
    ]  # fmt: skip
    old = os.umask(0o077)  # keys readable by their owner only
    try:
        for argv in steps:
            done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BrokerError(f"openssl {argv[1]} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    finally:
        os.umask(old)
    (certs / "server.csr").unlink(missing_ok=True)
    files.ca_file.chmod(0o644)
    files.cert_file.chmod(0o644)
    return files


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def write_credentials(
    site: Site,
    out: Path,
    *,
    service: str = SERVICE_USER,
    readers: Sequence[str] = (READER_USER,),
    simulator: str | None = None,
    rotate: Iterable[str] = (),
    tls_hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    tls: bool = True,
) -> Credentials:
    """Users, ACL and password file for `site` in `out`; TLS test certificates in out/certs unless there.

    Idempotent: users that already have a password (out/secrets/<user>.password) keep it, new users get a
    random one, users no longer in the site are removed, users in `rotate` get a new one. Run it again after
    changing the site file, then reload the broker (SIGHUP) to apply.
    """
    users = site_users(site, service=service, readers=readers, simulator=simulator)
    names = {u.name for u in users}
    rotate = set(rotate)
    unknown = sorted(rotate - names)
    if unknown:
        raise CredentialsError(f"cannot rotate {', '.join(unknown)}: no such MQTT user for this site")
    out.mkdir(parents=True, exist_ok=True)
    vault = out / "secrets"
    vault.mkdir(mode=0o700, exist_ok=True)
    vault.chmod(0o700)
    passwords: dict[str, str] = {}
    created: list[str] = []
    for u in users:
        f = vault / f"{u.name}.password"
        old = f.read_text(encoding="utf-8").strip() if f.exists() else ""
        if old and u.name not in rotate:
            passwords[u.name] = old
            continue
        passwords[u.name] = secrets.token_urlsafe(24)  # 192 bits
        _write_private(f, passwords[u.name] + "\n")
        created.append(u.name)
    removed = sorted(p.stem for p in vault.glob("*.password") if p.stem not in names)
    for name in removed:
        (vault / f"{name}.password").unlink()
    write_password_file(out / "passwd", passwords)
    (out / "acl").write_text(acl_text(users, str(site.path or "")), encoding="utf-8")
    files: TlsFiles | None = None
    if tls:
        certs = out / "certs"
        files = TlsFiles(certs / "ca.crt", certs / "server.crt", certs / "server.key")
        if not all(p.exists() for p in (files.ca_file, files.cert_file, files.key_file)):
            files = make_test_certs(certs, tls_hosts)
    return Credentials(out, tuple(users), outage_queue_size(site), files, tuple(created), tuple(removed))


# --- the shipped configuration, rendered for a local run ---------------------------------------------------


def render_config(
    template: str,
    creds: Credentials,
    *,
    plain_port: int,
    tls_port: int | None,
    data_dir: Path,
    log_file: Path,
) -> str:
    """The shipped mosquitto.conf with its file paths in `creds.dir`, its listeners on loopback ports, its
    persistence in `data_dir`, its log in `log_file` and its queue sized for the site; every other line as
    shipped. tls_port None drops the TLS listener. Fails if the template lost a line this relies on."""
    replaced: set[str] = set()  # the lines rewritten, by name: each must be there
    tls_lines = {"cafile", "certfile", "keyfile", "tls_version", "require_certificate"}
    out = []
    for line in template.splitlines():
        words = line.split()
        key = words[0] if words and not words[0].startswith("#") else ""
        if key in tls_lines and tls_port is None:
            continue
        if key in ("password_file", "acl_file", "cafile", "certfile", "keyfile") and words[1].startswith(INSTALL_DIR):
            line = f"{key} {creds.dir / words[1][len(INSTALL_DIR) :]}"
        elif key == "persistence_location":
            line = f"persistence_location {data_dir}/"
        elif key == "max_queued_messages":
            line = f"max_queued_messages {creds.queue_size}"
        elif key == "log_dest":
            line = f"log_dest file {log_file}"
        elif key == "listener" and words[1:] == ["1883", "127.0.0.1"]:
            line = f"listener {plain_port} 127.0.0.1"
        elif key == "listener" and words[1:] == ["8883"]:
            if tls_port is None:
                continue
            line, key = f"listener {tls_port} 127.0.0.1", "listener-tls"
        else:
            key = ""  # kept as shipped
        replaced.add(key)
        out.append(line)
    needed = {"password_file", "acl_file", "persistence_location", "max_queued_messages", "log_dest", "listener"}
    if tls_port is not None:
        needed |= {"listener-tls", "cafile", "certfile", "keyfile"}
    missing = sorted(needed - replaced)
    if missing:
        raise BrokerError(f"the shipped mosquitto.conf has no {', '.join(missing)} line as expected; fix the template")
    # As root, Mosquitto would drop to user `mosquitto`, which cannot read the owner-only files made here.
    out.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
    return "\n".join(out) + "\n"


# --- processes ---------------------------------------------------------------------------------------------


def _wait_listening(proc: subprocess.Popen[bytes], ports: Iterable[int], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise BrokerError(f"mosquitto exited ({proc.returncode}); see {log}:\n{tail}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout}s; see {log}")
            time.sleep(0.05)


class _Child:
    proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password file and ACL again (after a rotation)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)


class EmbeddedBroker(_Child):
    """Anonymous Mosquitto on loopback, for tools that need any broker. The demo runs `SecureBroker`."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port(1884)

    def start(self, timeout: float = 10.0) -> None:
        binary = find_mosquitto()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        # Loopback only and anonymous: nothing else can reach it.
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\nlog_type error\n"
        )
        log = open(self.workdir / "mosquitto.log", "wb")  # noqa: SIM115  lives as long as the child
        # Its own session: a Ctrl-C in the terminal goes to the demo, which stops the broker after the service
        # has flushed and said goodbye, not to the broker first (the service would see it vanish mid-shutdown).
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_listening(self.proc, [self.port], self.workdir / "mosquitto.log", timeout)


@dataclass
class SecureBroker(_Child):
    """The shipped configuration (deploy/mosquitto/mosquitto.conf) with `site`'s credentials, in `workdir`:
    authentication, the ACL, persistence and, when openssl is there, the TLS listener with test certificates.
    Both listeners on free loopback ports."""

    workdir: Path
    site: Site
    simulator: bool = True  # the simulator user (a demo publishes the whole site)
    tls: bool | None = None  # None: when openssl is installed
    fresh: bool = False  # forget persisted sessions and retained messages (a demo's clean evening)
    template: Path = SHIPPED_CONFIG
    port: int = 0  # plain listener
    tls_port: int | None = None
    creds: Credentials | None = field(default=None, init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, timeout: float = 10.0) -> Credentials:
        binary = find_mosquitto()
        if not self.template.is_file():  # deploy/ is in the source tree, not in the wheel
            raise BrokerError(
                f"the broker configuration {self.template} is missing; run crowdflow from a source checkout "
                "(it ships deploy/mosquitto/mosquitto.conf), or point it at your broker with --mqtt-host"
            )
        tls = self.tls if self.tls is not None else shutil.which("openssl") is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.creds = write_credentials(
            self.site, self.workdir, simulator=SIMULATOR_USER if self.simulator else None, tls=tls
        )
        self.port = self.port or free_port()
        self.tls_port = (self.tls_port or free_port()) if tls else None
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        if self.fresh:
            (data / "mosquitto.db").unlink(missing_ok=True)
        log = self.workdir / "mosquitto.log"
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            render_config(
                self.template.read_text(encoding="utf-8"),
                self.creds,
                plain_port=self.port,
                tls_port=self.tls_port,
                data_dir=data,
                log_file=log,
            )
        )
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),  # noqa: SIM115
            start_new_session=True,  # as above: the demo, not the terminal's Ctrl-C, stops it, after the service
        )
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        _wait_listening(self.proc, ports, log, timeout)
        return self.creds
