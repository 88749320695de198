"""The Lujiazui site with its sensors scaled to N, zones, grids and thresholds unchanged.

Each of the site's sensors is a template: the N sensors are copies of them in turn (same zone, kind, mode,
direction), so every zone keeps its mix of counters and anchors and grows in proportion. Copy k of sensor
`rs01-c1` is `rs01-c1-x<k>`. `interval_factor` stretches every reporting interval (the memory benchmark
replays an hour at 50,000 sensors in minutes by letting each sensor report less often; the health checks
follow the site file, so a slower sensor is not taken for a silent one).

Usage:
    .venv/bin/python benchmarks/scaled_site.py 10000 --out /tmp/site-10k.toml [--interval-factor 2]
    .venv/bin/python benchmarks/scaled_site.py        # checks 1,000 / 10,000 / 50,000 and times loading them

Ends with one line of key=value pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain.loader import default_site_path, load_site  # noqa: E402
from domain.site import Sensor  # noqa: E402

SIZES = (1_000, 10_000, 50_000)
_SENSORS_HEADER = "[[sensors]]"


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _sensor_block(s: Sensor, sid: str, interval_s: float) -> str:
    lines = [
        _SENSORS_HEADER,
        f"id = {_toml_str(sid)}",
        f"zone = {_toml_str(s.zone)}",
        f"kind = {_toml_str(s.kind)}",
    ]
    if s.kind == "counter":
        lines.append(f"mode = {_toml_str(s.mode)}")
        if s.entrance:
            lines.append(f"entrance = {_toml_str(s.entrance)}")
    if s.direction != "in":
        lines.append(f"direction = {_toml_str(s.direction)}")
    lines.append(f"interval_s = {interval_s:g}")
    return "\n".join(lines)


def scaled_site_text(sensors: int, interval_factor: float = 1.0, base: Path | None = None) -> str:
    """TOML text of the base site (default: Lujiazui) with `sensors` sensors copied from its own."""
    if sensors < 1:
        raise ValueError(f"sensors must be >= 1, got {sensors}")
    if interval_factor <= 0:
        raise ValueError(f"interval_factor must be > 0, got {interval_factor}")
    path = base or default_site_path()
    site = load_site(path)
    text = path.read_text(encoding="utf-8")
    head, sep, _ = text.partition("\n" + _SENSORS_HEADER)
    if not sep:
        raise ValueError(f"{path}: no [[sensors]] section to scale")
    # Everything before the sensors is kept verbatim; the site files put [[sensors]] last.
    templates = list(site.sensors.values())
    blocks = []
    for i in range(sensors):
        t = templates[i % len(templates)]
        blocks.append(_sensor_block(t, f"{t.id}-x{i // len(templates)}", t.interval_s * interval_factor))
    return head.rstrip() + "\n\n" + "\n\n".join(blocks) + "\n"


def write_scaled_site(sensors: int, out: Path, interval_factor: float = 1.0) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(scaled_site_text(sensors, interval_factor), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sensors", nargs="?", type=int, help="number of sensors (none: check the standard sizes)")
    ap.add_argument("--out", type=Path, help="where to write the site file (default: print it)")
    ap.add_argument("--interval-factor", type=float, default=1.0)
    args = ap.parse_args(argv)
    if args.sensors is not None:
        text = scaled_site_text(args.sensors, args.interval_factor)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
            site = load_site(args.out)
            print(f"{args.out}: {len(site.sensors):,} sensors in {len(site.zones)} zones")
            print(f"sensors={len(site.sensors)} zones={len(site.zones)}")
        else:
            sys.stdout.write(text)
        return 0
    import tempfile

    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            path = write_scaled_site(n, Path(tmp) / f"site-{n}.toml")
            t = time.perf_counter()
            site = load_site(path)
            took = time.perf_counter() - t
            per_zone = len(site.sensors) / len(site.zones)
            print(f"{n:>7,} sensors: {len(site.zones)} zones, {per_zone:,.0f} sensors per zone, loads in {took:.2f} s")
            figures[f"load_s_{n}"] = f"{took:.2f}"
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
