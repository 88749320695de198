"""Service configuration: a TOML file, then CROWDFLOW_<SECTION>_<KEY> environment variables, checked at start.

Unknown sections or keys are errors (with a did-you-mean), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec


class ConfigError(ValueError):
    pass


# Values no service could run with are refused at start, with the key named (msgspec checks them).
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: Port = 1883
    username: str = ""
    password: str = ""
    # The service's second connection, which publishes alerts and dead letters. The shipped broker config
    # binds client ids to user names, so it needs its own user there; empty: the same as username.
    publisher_username: str = ""
    publisher_password: str = ""
    client_id: str = "crowdflow-service"
    qos: Literal[0, 1, 2] = 1
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""  # client certificate (PEM), for a broker that requires one
    key_file: str = ""


class InfluxConfig(_Section):
    url: str = ""  # empty: the embedded store (memory + SQLite file in service.data_dir)
    api: Literal["auto", "v1", "v2"] = "auto"
    database: str = "crowdflow"  # v1
    username: str = ""
    password: str = ""
    token: str = ""  # v2
    org: str = ""
    bucket: str = ""
    # Disk spool while InfluxDB is unreachable (<data_dir>/influx-spool): at most this many bytes, the oldest
    # dropped and counted beyond it; about 3 million points (docs/storage.md has the sizing).
    spool_max_bytes: AtLeastOne = 512 * 1024 * 1024


class ServiceConfig(_Section):
    site: str = ""  # path to a site file; empty: the shipped Lujiazui site
    data_dir: str = "var"
    # "wall": event times are checked against this machine's clock; "sim": against the simulator's clock,
    # published on crowdflow/sim/clock, so an accelerated replay of another day is accepted.
    clock: Literal["wall", "sim"] = "wall"
    tick_s: Positive = 5.0
    # Real seconds from a reading to its zone's live push between ticks (0: zones update at ticks only).
    live_s: NonNegative = 0.05
    # Real seconds between periodic snapshots of the models (0: only at a clean shutdown).
    snapshot_s: NonNegative = 60.0
    lateness_s: NonNegative = 120.0
    # A sensor sending more readings of one kind than this within 10 s of event time is flooding: the rest are
    # rejected as too_frequent (0: no limit, for load tests that drive a few sensors very fast).
    sensor_rate_limit: Count = 200
    store_readings: bool = True


class DashboardConfig(_Section):
    host: str = "127.0.0.1"
    port: Port = 8000
    api_token: str = ""  # one operator token, for a deployment without a roster
    wall_tokens: list[str] = []  # read-only display tokens for command-centre walls
    admin_token: str = ""
    allowed_origins: list[str] = []
    # Host header values served (DNS-rebinding guard); empty: loopback names only (127.0.0.1, localhost, ::1).
    allowed_hosts: list[str] = []
    max_body_bytes: AtLeastOne = 65536  # request bodies larger than this get 413 before being read
    # Least real time between two pushed deltas; walls render at most 4 times a second on their own.
    push_interval_s: NonNegative = 0.05
    # The fan-out budget: websocket sends per second over all clients (the push process's included). With many
    # clients the interval between deltas grows to clients / this (2,000 clients: 0.5 s), so the loop that
    # sends (the push process's, or the ingest loop's for the main port's /ws) keeps up with every client.
    max_sends_per_s: Positive = 4000.0
    # The push stream in a process of its own (dashboard/pushserver.py): the port it listens on. "auto": the
    # dashboard's port + 1; 0 or "off": no push process, pages use the main port's /ws (in the service's
    # process, where every send shares the ingest loop). Resolved by push_port_of().
    push_port: int | str = "auto"
    # Where pages open the push stream, when it is not the page's host on push_port: "/ws" behind a reverse
    # proxy that routes /ws to push_port (docs/api-security.md), or a full ws:// or wss:// URL.
    push_url: str = ""


class AlertsConfig(_Section):
    roster: str = ""  # duty roster file; empty: the shipped Lujiazui roster (alerts/data/lujiazui_roster.toml)
    measures: str = ""  # measures file; empty: the shipped one (alerts/data/measures.toml)
    journal: str = ""  # SQLite file for alerts, deliveries and the audit trail; empty: <data_dir>/alerts.sqlite
    public_url: str = ""  # where officers open the officer page, put in every notification (e.g. https://cf.example)
    deliver: bool = True  # false: record notifications, send nothing (a test bench or a dry run)
    max_attempts: AtLeastOne = 5  # per recipient and channel, for transient failures
    vapid_private_key: str = ""  # Web Push (optional): path to the VAPID private key (PEM)
    vapid_subject: str = ""  # Web Push: "mailto:ops@example.org" the push services may contact


class Config(_Section):
    mqtt: MqttConfig = msgspec.field(default_factory=MqttConfig)
    influx: InfluxConfig = msgspec.field(default_factory=InfluxConfig)
    service: ServiceConfig = msgspec.field(default_factory=ServiceConfig)
    dashboard: DashboardConfig = msgspec.field(default_factory=DashboardConfig)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)


_SECTIONS: dict[str, type[_Section]] = {
    "mqtt": MqttConfig,
    "influx": InfluxConfig,
    "service": ServiceConfig,
    "dashboard": DashboardConfig,
    "alerts": AlertsConfig,
}
ENV_PREFIX = "CROWDFLOW_"
_LISTS = {"allowed_origins", "allowed_hosts", "wall_tokens"}  # comma-separated in environment variables


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    data: dict[str, dict[str, Any]] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{where}: cannot read the config file ({e.strerror}); check the path") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{where}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{where}: not valid TOML: {e}") from e
        except RecursionError as e:
            raise ConfigError(f"{where}: nested too deeply to be a crowdflow config; check the file") from e
    for name, section in data.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{where}: unknown section [{name}]{_did_you_mean(name, _SECTIONS)}")
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        fields = _SECTIONS[name].__struct_fields__
        for key in section:
            if key not in fields:
                raise ConfigError(f"{where}: [{name}] unknown key '{key}'{_did_you_mean(key, fields)}")
    _apply_env(data, env)
    try:
        cfg = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{where} (+ {ENV_PREFIX}* environment): {e}") from e
    _check_pairs(cfg, where)
    for name in _SECTIONS:
        part = getattr(cfg, name)
        for key in part.__struct_fields__:
            value = getattr(part, key)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{where} (+ {ENV_PREFIX}* environment): [{name}] {key} = {value} is not a number")
    return cfg


def push_port_of(dashboard: DashboardConfig) -> int | None:
    """The push process's port, or None when it is off ([dashboard] push_port: "auto", "off", 0 or a port)."""
    value = dashboard.push_port
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "auto":
            return dashboard.port + 1
        if word in ("off", "0"):
            return None
        if not word.isdigit():
            raise ConfigError(f'[dashboard] push_port = {value!r}: a port, "auto" (port + 1), or "off"')
        value = int(word)
    if isinstance(value, bool):
        raise ConfigError(f'[dashboard] push_port = {value!r}: a port, "auto" (port + 1), or "off"')
    return value or None


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def push_warnings(cfg: Config) -> list[str]:
    """Push stream settings that are valid but probably leave the walls dark, for the log at startup."""
    dashboard = cfg.dashboard
    push = push_port_of(dashboard)
    if push is None:
        return []
    out: list[str] = []
    url = dashboard.push_url
    public = [h for h in dashboard.allowed_hosts if h.strip().lower() not in _LOOPBACK]
    if not url and public:
        out.append(
            f"[dashboard] push_url is empty and allowed_hosts names {', '.join(public)}: pages will open "
            f"ws(s)://<their host>:{push}/ws, which a reverse proxy in front usually does not route (they fall "
            'back to the main port\'s /ws after a few failed tries). Behind a proxy set push_url = "/ws" and route '
            'it to the push port (docs/api-security.md); to serve the stream from the main port, push_port = "off"'
        )
    tls = [o for o in (*dashboard.allowed_origins, cfg.alerts.public_url) if o.strip().lower().startswith("https://")]
    if url.startswith("ws://") and tls:
        out.append(
            f"[dashboard] push_url = {url!r} is plain ws:// but the site seems to be served over TLS ({tls[0]}): "
            "browsers refuse ws:// from an https:// page; use wss:// or a path such as \"/ws\""
        )
    return out


def _check_pairs(cfg: Config, where: str) -> None:
    """Settings that are each valid alone but not together."""
    at = f"{where} (+ {ENV_PREFIX}* environment)"
    if cfg.mqtt.publisher_password and not cfg.mqtt.publisher_username:
        raise ConfigError(
            f"{at}: [mqtt] publisher_password is set but publisher_username is empty: the publisher would "
            "connect as [mqtt] username with that user's password, and this one would be ignored; set "
            "publisher_username too, or remove publisher_password"
        )
    try:
        push = push_port_of(cfg.dashboard)
    except ConfigError as e:
        raise ConfigError(f"{at}: {e}") from e
    if push is not None:
        if not 1 <= push <= 65535:
            raise ConfigError(f'{at}: [dashboard] push_port = {push} is not a port (1-65535; 0 or "off": none)')
        if push == cfg.dashboard.port:
            raise ConfigError(
                f"{at}: [dashboard] push_port = {push} is the dashboard's own port; choose another, "
                '"auto" (port + 1) or "off"'
            )
    url = cfg.dashboard.push_url
    if url and not (url.startswith("/") or url.startswith(("ws://", "wss://"))):
        raise ConfigError(f'{at}: [dashboard] push_url = {url!r}: a path such as "/ws", or a ws:// or wss:// URL')


def _apply_env(data: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in _SECTIONS:
            continue  # other CROWDFLOW_* variables (e.g. CROWDFLOW_CONFIG) are not settings
        fields = _SECTIONS[section].__struct_fields__
        if key not in fields:
            raise ConfigError(f"environment variable {var}: no setting [{section}] {key}{_did_you_mean(key, fields)}")
        data.setdefault(section, {})[key] = value.split(",") if key in _LISTS else value


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(choices))})"
