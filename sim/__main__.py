"""Command line: `python -m sim run nye --speed 60 --out runs/nye`, `python -m sim replay rec.csv`,
`python -m sim dry nye` (simulate without a broker, print the truth summary), `python -m sim list`.

On a broker with authentication (deploy/mosquitto, docs/mqtt-security.md): `--username crowdflow-sim
--password-file secrets/crowdflow-sim.password --port 8883 --ca-file certs/ca.crt`; the password can come from
the CROWDFLOW_SIM_PASSWORD environment variable instead, never from the command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import msgspec

from domain.loader import SiteError, load_site
from sim.mqtt import BrokerUnavailable, MqttAuth
from sim.publisher import run_scenario
from sim.replay import ReplayError, replay_csv
from sim.scenario import ScenarioError, load_scenario, shipped_scenarios
from sim.stream import Simulation


def _parser() -> argparse.ArgumentParser:
    # No abbreviations anywhere: "--password SECRET" must be an error, not a password file named SECRET.
    p = argparse.ArgumentParser(prog="python -m sim", description="crowdflow simulator", allow_abbrev=False)
    p.add_argument("--site", help="site file (default: the shipped Lujiazui site)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list shipped scenarios")
    for name in ("run", "dry"):
        r = sub.add_parser(
            name, help="publish a scenario" if name == "run" else "simulate only, no broker", allow_abbrev=False
        )
        r.add_argument("scenario", help="shipped scenario name or path to a .toml file")
        r.add_argument("--start", help="publish from this local time (e.g. 23:00) or ISO datetime")
        r.add_argument("--duration", type=float, help="publish this many simulated seconds")
        r.add_argument("--out", type=Path, help="directory for the ground truth files")
        if name == "run":
            _mqtt_args(r)
    rp = sub.add_parser("replay", help="replay a recorded CSV", allow_abbrev=False)
    rp.add_argument("csv", type=Path)
    _mqtt_args(rp)
    return p


def _mqtt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second; 0 = max")
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--username", help="MQTT user (the site's simulator or gateway user)")
    p.add_argument("--password-file", help="file holding the MQTT password (default: $CROWDFLOW_SIM_PASSWORD)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (the broker's TLS port, e.g. 8883)")
    p.add_argument("--ca-file", help="CA certificate that signed the broker's (implies --tls)")
    p.add_argument("--cert-file", help="client certificate, if the broker requires one")
    p.add_argument("--key-file", help="the client certificate's key")


def _auth(args: argparse.Namespace) -> MqttAuth:
    return MqttAuth.from_options(
        username=args.username,
        password_file=args.password_file,
        tls=args.tls,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "list":
        for name in shipped_scenarios():
            print(f"{name:10} {load_scenario(name).description}")
        return 0
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Ctrl-C / SIGTERM stop a run cleanly (truth still written); the previous handlers come back after.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        site = load_site(args.site)
        if args.cmd == "replay":
            r = replay_csv(
                args.csv,
                site,
                host=args.host,
                port=args.port,
                speed=args.speed,
                qos=args.qos,
                progress=True,
                stop=stop,
                auth=_auth(args),
            )
            print(json.dumps(msgspec.to_builtins(r), indent=2, ensure_ascii=False))
            return 0
        sc = load_scenario(args.scenario)
        if args.cmd == "dry":
            sim = Simulation(site, sc, args.start, args.duration)
            for _ in sim.messages():
                pass
            summary = sim.write_truth(args.out) if args.out else sim.summary()
            print(json.dumps(summary, indent=2, ensure_ascii=False))
            return 0
        s = run_scenario(
            site,
            sc,
            host=args.host,
            port=args.port,
            speed=args.speed,
            out_dir=args.out,
            start=args.start,
            duration_s=args.duration,
            qos=args.qos,
            stop=stop,
            auth=_auth(args),
        )
        out = msgspec.to_builtins(s)
        out.pop("truth", None)
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    except (SiteError, ScenarioError, ReplayError, BrokerUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
