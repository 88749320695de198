"""Screenshots of the live wall and the officer page during a surge, for the README (`make screenshots`).

Runs the real stack on this machine: an embedded Mosquitto, `crowdflow serve` (Lujiazui, sim clock), the
gathering scenario (a light show fills the Pearl Ring bridge and the Pearl Tower plaza from 19:40) published
up to a few minutes after the bridge crosses capacity, then Debian's Chromium (through Playwright, never a
browser download) at 1920x1080 for the wall and 390x844 for the officer of the bridge post.

    python scripts/screenshots.py [--out docs/screenshots] [--until 19:58]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from crowdflow.broker import EmbeddedBroker, free_port  # noqa: E402
from crowdflow.cli import demo_roster  # noqa: E402
from domain.loader import load_site  # noqa: E402
from sim.publisher import run_scenario  # noqa: E402
from sim.scenario import load_scenario  # noqa: E402
from tests.servers import ServiceError, ServiceProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
OFFICER = "lfc-bridge-d"  # the Pearl Ring bridge post, day shift: the surge's first responder
FOCUS_ZONE = "pearl-ring-bridge"


def step(text: str) -> None:
    print(f"[screenshots] {text}", flush=True)


def minutes_between(start: str, end: str) -> float:
    h0, m0 = map(int, start.split(":"))
    h1, m1 = map(int, end.split(":"))
    return float((h1 * 60 + m1) - (h0 * 60 + m0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    ap.add_argument("--start", default="19:20", help="scenario time to start publishing")
    ap.add_argument("--until", default="19:58", help="scenario time of the screenshots")
    ap.add_argument("--speed", type=float, default=240.0)
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: run `apt-get install -y chromium fonts-noto-cjk` (or `make system-deps`)")
        return 1
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crowdflow-shots-") as tmp:
        work = Path(tmp)
        broker = EmbeddedBroker(work / "broker")
        broker.start()
        roster = work / "roster.toml"
        ((_, covers, token),) = demo_roster(roster, (OFFICER,))
        port = free_port(8765)
        cfg = work / "crowdflow.toml"
        operator = "screenshot-operator"
        cfg.write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "cf-shots"\n'
            f'[service]\nclock = "sim"\ndata_dir = "{work / "var"}"\ntick_s = 5\n'
            f'[dashboard]\nport = {port}\npush_port = {free_port()}\n'
            f'api_token = "{operator}"\nwall_tokens = ["{operator}-wall"]\n'
            f'[alerts]\nroster = "{roster}"\ndeliver = false\n',
            encoding="utf-8",
        )
        service = ServiceProcess(cfg, port, work / "service.log")
        base = service.base
        try:
            step(f"service starting on {base}")
            try:
                service.start()
            except ServiceError as e:
                print(e)
                return 1
            minutes = minutes_between(args.start, args.until)
            step(f"publishing the gathering scenario {args.start}-{args.until} at {args.speed:g}x "
                 f"(~{minutes * 60 / args.speed:.0f} s)")  # fmt: skip
            run_scenario(load_site(), load_scenario("gathering"), host="127.0.0.1", port=broker.port,
                         speed=args.speed, out_dir=None, start=args.start, duration_s=minutes * 60.0,
                         progress=True)  # fmt: skip
            time.sleep(3)  # the last tick and its delta
            zone = next(z for z in service.get("/api/zones", operator) if z["id"] == FOCUS_ZONE)
            step(f"{FOCUS_ZONE}: {zone['level_label']}, {zone['occupancy']:.0f} / {zone['capacity']}")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                wall = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN").new_page()
                wall.goto(f"{base}/#wall={operator}-wall")  # the read-only display token, as the demo prints it
                wall.wait_for_selector(f'svg#map path[data-zone="{FOCUS_ZONE}"]')
                wall.locator("#people-now").filter(has_not_text="—").wait_for()  # CSP: no string predicates
                wall.wait_for_timeout(1500)
                wall.screenshot(path=str(out / "wall.png"))
                step(f"wrote {out / 'wall.png'}")
                wall.click(f'svg#map path[data-zone="{FOCUS_ZONE}"]')
                wall.wait_for_selector("#zone-detail canvas")
                wall.wait_for_timeout(1500)
                wall.screenshot(path=str(out / "wall-zone.png"))
                step(f"wrote {out / 'wall-zone.png'}")
                phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                                            device_scale_factor=2, is_mobile=True, has_touch=True)  # fmt: skip
                phone.add_init_script(f"sessionStorage.setItem('crowdflow.token', {json.dumps(token)})")
                officer = phone.new_page()
                officer.goto(base + "/officer")
                officer.wait_for_selector("#my-alerts li[data-alert]", timeout=30_000)
                officer.wait_for_timeout(1000)
                officer.screenshot(path=str(out / "officer.png"))
                step(f"wrote {out / 'officer.png'} ({OFFICER}: {covers})")
                browser.close()
        finally:
            service.stop()
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
