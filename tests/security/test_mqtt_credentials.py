"""`crowdflow mqtt-credentials` and what it writes: the ACL's rules per user, the password file, the secrets,
idempotent re-runs, and the shipped configuration's settings."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from crowdflow.broker import (
    SHIPPED_CONFIG,
    BrokerError,
    CredentialsError,
    acl_text,
    outage_queue_size,
    render_config,
    site_users,
    write_credentials,
)
from crowdflow.cli import main
from domain.loader import load_site
from domain.site import Site
from tests.servers import require_binary


def _rules(acl: str) -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    user = ""
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            rules[user] = []
        elif line.startswith(("topic ", "pattern ")):
            assert user, f"a rule before any user applies to anonymous clients: {line}"
            rules[user].append(line)
    return rules


def test_each_sensor_writes_only_its_own_topics_and_only_the_service_reads_them(mini_site: Site) -> None:
    rules = _rules(acl_text(site_users(mini_site, simulator="crowdflow-sim")))
    assert not any(r.startswith("pattern") for rs in rules.values() for r in rs)  # would apply to every user
    for sid in mini_site.sensors:
        assert rules[sid] == [f"topic write dt/crowdflow/+/+/{sid}/+"]
    readers_of_sensors = [u for u, r in rules.items() if any(x.startswith("topic read dt/") for x in r)]
    assert readers_of_sensors == ["crowdflow"]
    alert_writers = [u for u, r in rules.items() if "topic write crowdflow/alerts/#" in r]
    assert alert_writers == ["crowdflow-out"]  # the service's publisher: its subscriber only reads
    assert rules["alerts-reader"] == ["topic read crowdflow/alerts/#"]
    assert rules["crowdflow-sim"] == ["topic write dt/crowdflow/#", "topic write crowdflow/sim/clock"]
    assert "crowdflow-sim" not in _rules(acl_text(site_users(mini_site)))  # only when asked for


def test_user_names_that_collide_or_break_the_files_are_refused(mini_site: Site) -> None:
    with pytest.raises(CredentialsError, match="'seg1-west' is both a reader and a sensor"):
        site_users(mini_site, readers=["seg1-west"])
    with pytest.raises(CredentialsError, match="cannot be an MQTT user name"):
        site_users(mini_site, service="svc:1")
    with pytest.raises(CredentialsError, match="cannot be an MQTT user name"):
        site_users(mini_site, readers=["wall #2"])


def test_credentials_are_private_hashed_and_kept_across_runs(tmp_path: Path, mini_site: Site) -> None:
    require_binary("mosquitto_passwd", "mosquitto")
    out = tmp_path / "creds"
    first = write_credentials(mini_site, out, tls=False)
    assert set(first.created) == {u.name for u in first.users}
    assert stat.S_IMODE((out / "secrets").stat().st_mode) == 0o700
    passwd = (out / "passwd").read_text()
    for u in first.users:
        assert stat.S_IMODE(first.password_file(u.name).stat().st_mode) == 0o600
        pw = first.password(u.name)
        assert len(pw) >= 32 and pw not in passwd
        assert re.search(rf"^{re.escape(u.name)}:\$7\$", passwd, re.M), f"{u.name} has no sha512-pbkdf2 hash"
    assert not list(out.glob(".*"))  # no plain-text leftovers
    before = {u.name: first.password(u.name) for u in first.users}
    # Again, with a sensor gone and one rotated: the others keep their passwords.
    text = Path(str(mini_site.path)).read_text()
    start = text.index('[[sensors]]\nid = "plaza-cam"')
    end = text.find("[[", start + 2)
    smaller = tmp_path / "site.toml"
    smaller.write_text(text[:start] + (text[end:] if end >= 0 else ""))
    second = write_credentials(load_site(smaller), out, rotate=["seg1-west"], tls=False)
    assert second.created == ("seg1-west",) and second.removed == ("plaza-cam",)
    assert second.password("seg1-west") != before["seg1-west"]
    assert all(second.password(u.name) == before[u.name] for u in second.users if u.name != "seg1-west")
    assert "plaza-cam" not in (out / "passwd").read_text() and "plaza-cam" not in (out / "acl").read_text()
    with pytest.raises(CredentialsError, match="cannot rotate nobody"):
        write_credentials(mini_site, out, rotate=["nobody"], tls=False)


def test_the_command_prints_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_binary("mosquitto_passwd", "mosquitto")
    require_binary("openssl", "openssl")
    out = tmp_path / "creds"
    site = Path(__file__).parents[1] / "fixtures" / "mini_site.toml"
    assert main(["mqtt-credentials", "--out", str(out), "--site", str(site), "--simulator"]) == 0
    printed = capsys.readouterr()
    assert "5 sensor" in printed.out and "max_queued_messages" in printed.out
    for f in (out / "secrets").glob("*.password"):
        assert f.read_text().strip() not in printed.out + printed.err
    assert (out / "certs" / "ca.crt").exists() and not (out / "certs" / "server.key").stat().st_mode & 0o077
    assert main(["mqtt-credentials", "--out", str(out), "--site", str(site), "--rotate", "nobody"]) == 2
    assert "no such MQTT user" in capsys.readouterr().err


def test_the_shipped_config_is_secure_and_sized_for_the_shipped_site() -> None:
    lines = [ln.split() for ln in SHIPPED_CONFIG.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    conf: dict[str, list[list[str]]] = {}
    for words in lines:
        conf.setdefault(words[0], []).append(words[1:])
    assert conf["allow_anonymous"] == [["false"]] and conf["per_listener_settings"] == [["false"]]
    assert conf["use_username_as_clientid"] == [["true"], ["true"]]  # per listener: no session takeover
    assert conf["listener"] == [["1883", "127.0.0.1"], ["8883"]]  # plain on loopback only, TLS for the rest
    assert all(k in conf for k in ("password_file", "acl_file", "cafile", "certfile", "keyfile"))
    assert conf["persistence"] == [["true"]]
    assert conf["max_queued_messages"] == [[str(outage_queue_size(load_site()))]] == [["95000"]]


def test_render_refuses_a_template_that_lost_a_security_line(tmp_path: Path, mini_site: Site) -> None:
    require_binary("mosquitto_passwd", "mosquitto")
    creds = write_credentials(mini_site, tmp_path / "c", tls=False)
    template = SHIPPED_CONFIG.read_text().replace("acl_file /etc/mosquitto/crowdflow/acl\n", "")
    with pytest.raises(BrokerError, match="acl_file"):
        render_config(template, creds, plain_port=1, tls_port=None, data_dir=tmp_path, log_file=tmp_path / "l")
    text = render_config(
        SHIPPED_CONFIG.read_text(), creds, plain_port=1, tls_port=None, data_dir=tmp_path, log_file=tmp_path / "l"
    )
    assert "\ncafile" not in text and "listener 1 127.0.0.1" in text and "allow_anonymous false" in text


def test_a_missing_tool_says_which_package_to_install() -> None:
    from crowdflow.broker import find_binary

    with pytest.raises(BrokerError, match=r"no-such-tool is not installed.*apt-get install -y some-package"):
        find_binary("no-such-tool", "some-package", "crowdflow needs it")


def test_render_refuses_a_template_whose_files_or_listeners_moved(tmp_path: Path, mini_site: Site) -> None:
    require_binary("mosquitto_passwd", "mosquitto")
    creds = write_credentials(mini_site, tmp_path / "c", tls=False)
    shipped = SHIPPED_CONFIG.read_text()
    for old, new, named in (
        ("password_file /etc/mosquitto/crowdflow/passwd", "password_file /srv/passwd", "password_file"),
        ("listener 1883 127.0.0.1", "listener 1883", "listener"),
    ):
        assert old in shipped
        with pytest.raises(BrokerError, match=named):
            render_config(
                shipped.replace(old, new), creds, plain_port=1, tls_port=2, data_dir=tmp_path, log_file=tmp_path / "l"
            )
