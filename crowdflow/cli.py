"""`crowdflow` command line: demo, serve, sim, replay, check-site, mqtt-credentials."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crowdflow.broker import BrokerError, CredentialsError
from crowdflow.config import Config, ConfigError, load_config, push_port_of
from domain.loader import SiteError, load_site

if TYPE_CHECKING:
    from sim.mqtt import MqttAuth

BOLD, RED, GREEN, YELLOW, RESET = "\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[0m"


def _tty() -> bool:
    return sys.stdout.isatty()


def _c(code: str, text: str) -> str:
    return f"{code}{text}{RESET}" if _tty() else text


def _config(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None) or os.environ.get("CROWDFLOW_CONFIG")
    cfg = load_config(path)
    # Command-line flags win over the file and the environment.
    for flag, (section, key) in {
        "mqtt_host": ("mqtt", "host"),
        "mqtt_port": ("mqtt", "port"),
        "influx_url": ("influx", "url"),
        "site": ("service", "site"),
        "clock": ("service", "clock"),
        "data_dir": ("service", "data_dir"),
        "port": ("dashboard", "port"),
        "host": ("dashboard", "host"),
    }.items():
        value = getattr(args, flag, None)
        if value is not None:
            setattr(getattr(cfg, section), key, value)
    return cfg


def cmd_check_site(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.file)
    except SiteError as e:
        print(_c(RED, str(e)), file=sys.stderr)
        print("Fix the fields named above and run `crowdflow check-site` again.", file=sys.stderr)
        return 1
    from domain.profile import CapacityProfile

    prof = CapacityProfile(site)
    print(_c(GREEN, f"{args.file or site.path}: OK"))
    print(
        f"  {len(site.grids)} grids, {len(site.micro_grids)} micro-grids, {len(site.zones)} zones "
        f"({len(site.riverside())} riverside segments), {len(site.sensors)} sensors"
    )
    for day in prof.day_types():
        print(f"  {day:<8} expected arrivals {prof.arrivals(day).sum():>12,.0f}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from crowdflow.service import Service

    cfg = _config(args)
    # One line per record with time, level and logger, so an operator (and the soak) can tell an error from
    # a notice; warnings and up, as the service logs only what needs attention.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(Service(cfg).run())
    return 0


def _run_sim(
    site_path: str | None,
    scenario: str,
    *,
    host: str,
    port: int,
    speed: float,
    out: Path | None,
    start: str | None,
    duration_s: float | None,
    stop: threading.Event | None = None,
    progress: bool = True,
    auth: MqttAuth | None = None,
) -> Any:
    from sim.publisher import run_scenario
    from sim.scenario import load_scenario

    site = load_site(site_path)
    return run_scenario(
        site,
        load_scenario(scenario),
        host=host,
        port=port,
        speed=speed,
        out_dir=out,
        start=start,
        duration_s=duration_s,
        progress=progress,
        stop=stop,
        auth=auth,
    )


def _publisher_auth(args: argparse.Namespace) -> MqttAuth:
    from sim.mqtt import MqttAuth

    try:
        return MqttAuth.from_options(
            username=args.mqtt_username,
            password_file=args.mqtt_password_file,
            tls=args.mqtt_tls,
            ca_file=args.mqtt_ca_file,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e


def cmd_sim(args: argparse.Namespace) -> int:
    summary = _run_sim(
        args.site,
        args.scenario,
        host=args.mqtt_host,
        port=args.mqtt_port,
        speed=args.speed,
        out=Path(args.out) if args.out else None,
        start=args.start,
        duration_s=args.duration * 60 if args.duration else None,
        auth=_publisher_auth(args),
    )
    print(f"\n{summary}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from sim.replay import replay_csv

    summary = replay_csv(
        Path(args.file),
        load_site(args.site),
        host=args.mqtt_host,
        port=args.mqtt_port,
        speed=args.speed,
        auth=_publisher_auth(args),
    )
    print(f"\n{summary}")
    return 0


def cmd_mqtt_credentials(args: argparse.Namespace) -> int:
    """Users, ACL, password file and TLS test certificates for a site's broker (docs/mqtt-security.md)."""
    from crowdflow.broker import SIMULATOR_USER, write_credentials

    site = load_site(args.site)
    out = Path(args.out)
    creds = write_credentials(
        site,
        out,
        service=args.service_user,
        readers=args.reader or ["alerts-reader"],
        simulator=SIMULATOR_USER if args.simulator else None,
        rotate=args.rotate or (),
        tls_hosts=args.tls_host or ["localhost", "127.0.0.1"],
        tls=not args.no_tls,
    )
    roles: dict[str, int] = {}
    for u in creds.users:
        roles[u.role] = roles.get(u.role, 0) + 1
    print(_c(GREEN, f"{out}: MQTT credentials for {site.path}"))
    print("  users        " + ", ".join(f"{n} {role}" for role, n in roles.items()))
    rotated = [u for u in creds.created if u in set(args.rotate or ())]
    new = [u for u in creds.created if u not in rotated]
    for what, names in (("new", new), ("rotated", rotated), ("removed", creds.removed)):
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            print(f"  {what:<12} {len(names)}: {shown}")
    print(f"  passwords    {out / 'secrets'}/<user>.password (owner-only; give each device its own)")
    print(f"  broker files {creds.passwd} (hashed), {creds.acl}")
    if creds.tls:
        print(f"  TLS          {creds.tls.ca_file} (give it to clients), {creds.tls.cert_file}, {creds.tls.key_file}")
    print(f"  queue        max_queued_messages {creds.queue_size} for this site (6 h of readings x1.5)")
    print(
        "  install      copy passwd, acl and certs/ to /etc/mosquitto/crowdflow/ (readable by the mosquitto "
        "user), then `systemctl reload mosquitto`"
    )
    return 0


# Officers given a login in the demo, by the shift the demo starts in: the patrols of two riverside stretches
# (where New Year's Eve crowds gather) and the grid leader above them. Names and duties come from the roster.
DEMO_OFFICERS = {
    "day": ("rsb-tip-d", "rsb-north-d", "lead-rsb"),
    "night": ("rsb-tip-n", "rsb-north-n", "lead-biz-n"),
}


def _demo_shift(start: str) -> str:
    """'20:00' -> 'night': the shipped roster's day shift is 08:00-20:00."""
    hour = int(start.split(":")[0]) if start[:2].strip().isdigit() else 20
    return "day" if 8 <= hour < 20 else "night"


def demo_roster(path: Path, people: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """Write the shipped roster to `path` with a fresh random API token for each of `people`.

    Returns (name, what they cover, token) for each, for the banner. The roster keeps only each token's
    sha256 (token_sha256), as a real one would; the tokens exist only in this run's banner.
    """
    from alerts.roster import default_roster_path, with_tokens

    text = default_roster_path().read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    names = {p["id"]: p["name"] for p in doc["people"]}
    tokens = {person: secrets.token_urlsafe(12) for person in people}
    text = with_tokens(text, tokens)
    out = []
    for person, token in tokens.items():
        duties = [d for d in doc["duties"] if d["person"] == person]
        covers = ", ".join(
            [*(z for d in duties for z in d.get("zones", [])), *(m for d in duties for m in d.get("micro_grids", [])),
             *(f"grid {g}" for d in duties for g in d.get("grids", []))]
        )  # fmt: skip
        out.append((names[person], covers, token))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    from crowdflow.broker import SecureBroker, free_port
    from crowdflow.service import Service
    from sim.mqtt import MqttAuth

    cfg = _config(args)
    data_dir = Path(cfg.service.data_dir) / "demo"
    broker = None
    sim_auth = None
    if args.mqtt_host is None:
        # The shipped broker configuration, with this site's users and ACL: the demo runs what a deployment runs.
        broker = SecureBroker(data_dir / "broker", load_site(cfg.service.site or None), fresh=True)
        creds = broker.start()
        service_user, sim_user = creds.user("service"), creds.user("simulator")
        ca = str(creds.tls.ca_file) if creds.tls else ""
        cfg.mqtt.host, cfg.mqtt.port = "127.0.0.1", broker.tls_port or broker.port
        cfg.mqtt.username, cfg.mqtt.password = service_user, creds.password(service_user)
        out_user = creds.user("publisher")
        cfg.mqtt.publisher_username, cfg.mqtt.publisher_password = out_user, creds.password(out_user)
        cfg.mqtt.tls, cfg.mqtt.ca_file = bool(ca), ca
        sim_auth = MqttAuth(username=sim_user, password=creds.password(sim_user), tls=bool(ca), ca_file=ca)
    cfg.service.clock = "sim"
    cfg.service.data_dir = str(data_dir)
    for name in ("state.json", "alerts.sqlite", "alerts.sqlite-wal", "alerts.sqlite-shm"):
        (data_dir / name).unlink(missing_ok=True)  # each demo starts from a clean evening
    logins: list[tuple[str, str, str]] = []
    if not cfg.alerts.roster:
        # The shipped roster's phones are placeholders (ntfy on 127.0.0.1:8090): record, do not try to send.
        cfg.alerts.deliver = False
        # A copy of it in which a few officers can sign in to the officer page with this run's tokens.
        demo_people = DEMO_OFFICERS[_demo_shift(args.start)]
        cfg.alerts.roster = str(data_dir / "demo-roster.toml")
        logins = demo_roster(Path(cfg.alerts.roster), demo_people)
    if not cfg.dashboard.api_token:
        cfg.dashboard.api_token = secrets.token_urlsafe(16)  # this run's operator token, printed below
    if not cfg.dashboard.wall_tokens:
        cfg.dashboard.wall_tokens = [secrets.token_urlsafe(16)]  # this run's read-only wall token
    cfg.dashboard.port = free_port(cfg.dashboard.port)
    push_port = push_port_of(cfg.dashboard)
    if push_port is not None:  # the walls and phones stream from the push process: a free port for it too
        cfg.dashboard.push_port = free_port(push_port)
        while cfg.dashboard.push_port == cfg.dashboard.port:
            cfg.dashboard.push_port = free_port()
    url = f"http://{cfg.dashboard.host}:{cfg.dashboard.port}/"
    print(_c(BOLD, "crowdflow demo: New Year's Eve on the Lujiazui riverside"))
    # In the fragment, which browsers never send: the page keeps it in its session and drops it from the URL.
    print(f"  live wall    {_c(GREEN, f'{url}#wall={cfg.dashboard.wall_tokens[0]}')}  (read-only wall token)")
    print(f"  API          {url}api/zones  {url}api/alerts  {url}healthz")
    if push_port is not None:
        print(f"  push stream  ws://{cfg.dashboard.host}:{cfg.dashboard.push_port}/ws (its own process; pages find it)")
    if broker and broker.creds:
        how = f"TLS, CA {broker.creds.tls.ca_file}" if broker.creds.tls else "no TLS (openssl not installed)"
        print(
            f"  MQTT broker  127.0.0.1:{cfg.mqtt.port} ({how}), embedded Mosquitto with deploy/mosquitto's "
            f"config: no anonymous clients, one user per sensor, ACL; passwords in {broker.workdir / 'secrets'}"
        )
    else:
        print(f"  MQTT broker  {cfg.mqtt.host}:{cfg.mqtt.port} (yours)")
    sent = "sent to the roster's channels" if cfg.alerts.deliver else "recorded, not sent (placeholder roster)"
    print(f"  alerts       notifications {sent}; {url}api/alerts/<id>/deliveries shows them (operator token)")
    print(f"  operator     Authorization: Bearer {cfg.dashboard.api_token}  (ack, resolve, silences, emergency mode)")
    for name, covers, token in logins:
        print(f"  officer page: {url}officer  token for {name} ({covers}): {token}")
    print(
        f"  simulator    scenario {args.scenario} from {args.start} at {args.speed:g}x; ground truth in "
        f"{data_dir / 'truth'}"
    )
    print("  Ctrl-C stops everything.\n", flush=True)
    service = Service(cfg, quiet=True)
    stop = threading.Event()

    def simulate() -> None:
        time.sleep(1.5)  # let the service subscribe first
        try:
            _run_sim(
                cfg.service.site or None,
                args.scenario,
                host=cfg.mqtt.host,
                port=cfg.mqtt.port,
                speed=args.speed,
                out=data_dir / "truth",
                start=args.start,
                duration_s=None,
                stop=stop,
                auth=sim_auth,
            )
            print(f"\nsimulation finished; the wall stays up at {url} until Ctrl-C", flush=True)
        except Exception as e:  # the demo keeps serving what it has; say what broke
            print(_c(RED, f"\nsimulator stopped: {e}"), file=sys.stderr, flush=True)

    sim_thread = threading.Thread(target=simulate, name="sim", daemon=True)
    sim_thread.start()
    try:
        asyncio.run(service.run())
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if broker:
            broker.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crowdflow", description="Real-time crowd-flow monitoring and alerting.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, host: str | None = None, port: int | None = None) -> None:
        # None means "from the config file / environment" (demo, serve); publishers default to a local broker.
        sp.add_argument("--config", help="TOML config file (or set CROWDFLOW_CONFIG)")
        sp.add_argument("--site", help="site file (default: the shipped Lujiazui site)")
        sp.add_argument("--mqtt-host", default=host)
        sp.add_argument("--mqtt-port", type=int, default=port)

    d = sub.add_parser("demo", help="embedded broker + simulator (New Year's Eve) + service + live wall")
    common(d)
    d.add_argument("--scenario", default="nye")
    d.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    d.add_argument("--start", default="20:00", help="local time in the scenario to start publishing")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--host", default=None)
    d.add_argument("--data-dir", default=None)
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("serve", help="run the service against a broker (and optionally InfluxDB)")
    common(s)
    s.add_argument("--influx-url", default=None)
    s.add_argument("--clock", choices=["wall", "sim"], default=None)
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--host", default=None)
    s.add_argument("--data-dir", default=None)
    s.set_defaults(func=cmd_serve)

    def publisher_auth(sp: argparse.ArgumentParser) -> None:
        # The password from a file or $CROWDFLOW_SIM_PASSWORD, never the command line (ps shows it).
        sp.add_argument("--mqtt-username", help="MQTT user (the site's simulator or gateway user)")
        sp.add_argument("--mqtt-password-file", help="file holding the password (default: $CROWDFLOW_SIM_PASSWORD)")
        sp.add_argument("--mqtt-tls", action="store_true", help="connect with TLS (the broker's TLS port)")
        sp.add_argument("--mqtt-ca-file", help="CA certificate that signed the broker's (implies --mqtt-tls)")

    # No abbreviations: "--mqtt-password SECRET" must be an error, not a password file named SECRET.
    m = sub.add_parser("sim", help="publish a simulated scenario over MQTT", allow_abbrev=False)
    common(m, "127.0.0.1", 1883)
    publisher_auth(m)
    m.add_argument("scenario", help="weekday, holiday, nye, faults, or a scenario TOML file")
    m.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second; 0 = max")
    m.add_argument("--out", help="directory for ground truth")
    m.add_argument("--start", help="local time to start publishing (HH:MM)")
    m.add_argument("--duration", type=float, help="minutes of simulated time to publish")
    m.set_defaults(func=cmd_sim)

    r = sub.add_parser("replay", help="publish a recorded CSV over MQTT, accelerated", allow_abbrev=False)
    common(r, "127.0.0.1", 1883)
    publisher_auth(r)
    r.add_argument("file")
    r.add_argument("--speed", type=float, default=60.0)
    r.set_defaults(func=cmd_replay)

    sub.add_parser("backtest", help="run the detectors offline over a recorded CSV (crowdflow backtest --help)")

    q = sub.add_parser(
        "mqtt-credentials",
        help="users, ACL, password file and TLS test certificates for the site's broker (docs/mqtt-security.md)",
    )
    q.add_argument("--out", required=True, help="directory to write passwd, acl, certs/ and secrets/ to")
    q.add_argument("--site", help="site file (default: the shipped Lujiazui site)")
    q.add_argument("--service-user", default="crowdflow", help="the service's MQTT user")
    q.add_argument("--reader", action="append", help="a user that reads the alerts (repeat; default alerts-reader)")
    q.add_argument("--simulator", action="store_true", help="add the simulator user (publishes for every sensor)")
    q.add_argument("--rotate", action="append", help="give this user a new password (repeat)")
    q.add_argument("--tls-host", action="append", help="name or IP clients use for the broker (repeat)")
    q.add_argument("--no-tls", action="store_true", help="no TLS test certificates")
    q.set_defaults(func=cmd_mqtt_credentials)

    c = sub.add_parser("check-site", help="validate a site file and print its summary")
    c.add_argument("file", nargs="?", default=None)
    c.set_defaults(func=cmd_check_site)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "backtest":
        # The backtest owns its options (detect/backtest/cli.py); argparse here would swallow them.
        from detect.backtest.cli import main as backtest_main

        return backtest_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, SiteError, BrokerError, CredentialsError, ConnectionError) as e:
        # BrokerError: a missing binary or a broker that would not start; ConnectionError: the broker refused
        # the publisher or did not answer (sim.mqtt.BrokerUnavailable).
        print(_c(RED, f"crowdflow: {e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
