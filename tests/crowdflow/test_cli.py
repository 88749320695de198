import socket
from pathlib import Path

import pytest

from crowdflow.broker import EmbeddedBroker
from crowdflow.cli import main
from crowdflow.simclock import SimClock
from domain.clock import ManualClock
from domain.site import Site

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


def test_the_demo_broker_runs_the_shipped_config_with_the_sites_users(tmp_path: Path, mini_site: Site) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from crowdflow.broker import SecureBroker

    b = SecureBroker(tmp_path / "broker", mini_site, fresh=True)
    creds = b.start()
    try:
        assert creds.tls is not None and b.tls_port is not None
        assert "allow_anonymous false" in (tmp_path / "broker" / "mosquitto.conf").read_text()

        def connack(user: str | None, password: str | None, tls: bool) -> int:
            c = paho.Client(CallbackAPIVersion.VERSION2)
            if user:
                c.username_pw_set(user, password)
            if tls:
                c.tls_set(ca_certs=str(creds.tls.ca_file))  # type: ignore[union-attr]
            got: list[int] = []
            c.on_connect = lambda _c, _u, _f, rc, _p: got.append(rc.value)
            c.connect("127.0.0.1", b.tls_port if tls else b.port)  # type: ignore[arg-type]
            while not got:
                c.loop(timeout=1.0)
            c.disconnect()
            return got[0]

        assert connack(None, None, tls=False) == 0x87  # not authorised
        assert connack("crowdflow", creds.password("crowdflow"), tls=True) == 0
        assert connack("crowdflow-sim", creds.password("crowdflow-sim"), tls=True) == 0
    finally:
        b.stop()
    assert b.proc is not None and b.proc.poll() is not None


def test_publishers_take_a_user_and_a_password_file_never_a_password(tmp_path: Path) -> None:
    from crowdflow.cli import _publisher_auth, build_parser
    from sim.mqtt import MqttAuth

    pw = tmp_path / "sim.password"
    pw.write_text("s3cret-from-a-file\n")
    args = build_parser().parse_args(
        ["sim", "nye", "--mqtt-username", "crowdflow-sim", "--mqtt-password-file", str(pw)]
    )
    auth = _publisher_auth(args)
    assert (auth.username, auth.password, auth.tls) == ("crowdflow-sim", "s3cret-from-a-file", False)
    assert "s3cret" not in repr(auth)
    env = MqttAuth.from_options(
        username="gw", password_file=None, tls=False, ca_file=None, env={"CROWDFLOW_SIM_PASSWORD": "from-env"}
    )
    assert env.password == "from-env"
    with pytest.raises(SystemExit):  # there is no --mqtt-password option
        build_parser().parse_args(["sim", "nye", "--mqtt-password", "x"])


def test_bad_publisher_credentials_are_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.password"
    assert main(["sim", "nye", "--mqtt-username", "u", "--mqtt-password-file", str(missing)]) == 2
    assert f"cannot read the MQTT password from {missing}" in capsys.readouterr().err
    assert main(["sim", "nye", "--mqtt-ca-file", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
