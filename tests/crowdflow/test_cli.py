import socket
from pathlib import Path

import pytest

from crowdflow.broker import EmbeddedBroker
from crowdflow.cli import main
from crowdflow.simclock import SimClock
from domain.clock import ManualClock

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_check_site_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-site", str(FIXTURES / "mini_site.toml")]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "3 zones" in out and "holiday" in out


def test_check_site_reports_zone_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = (
        (FIXTURES / "mini_site.toml")
        .read_text()
        .replace('neighbours = ["seg-1"]\nsegment = 2', 'neighbours = ["seg-9"]\nsegment = 2')
    )
    f = tmp_path / "bad.toml"
    f.write_text(bad)
    assert main(["check-site", str(f)]) == 1
    err = capsys.readouterr().err
    assert str(f) in err and "zones 'seg-2'" in err and "neighbours" in err and "seg-9" in err


def test_embedded_broker_starts_on_a_free_port_and_stops(tmp_path: Path) -> None:
    b = EmbeddedBroker(tmp_path)
    b.start()
    try:
        with socket.create_connection(("127.0.0.1", b.port), timeout=2):
            pass
    finally:
        b.stop()
    assert b.proc is not None and b.proc.poll() is not None


def test_sim_clock_follows_messages_and_never_goes_back() -> None:
    c = SimClock(ManualClock(5.0))
    assert c.now() == 5.0 and not c.started
    assert c.feed(b'{"epoch": 100.0, "speed": 60}')
    assert c.feed(b'{"epoch": 90.0}') and c.now() == 100.0
    assert not c.feed(b"garbage") and c.now() == 100.0


def test_publishers_default_to_a_local_broker_and_the_service_to_its_config() -> None:
    from crowdflow.cli import build_parser

    sim = build_parser().parse_args(["sim", "nye"])
    assert (sim.mqtt_host, sim.mqtt_port) == ("127.0.0.1", 1883)
    serve = build_parser().parse_args(["serve"])
    assert (serve.mqtt_host, serve.mqtt_port) == (None, None)  # None: taken from the config file / environment
