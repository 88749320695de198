from pathlib import Path

import pytest

from crowdflow.config import ConfigError, load_config


def test_defaults_without_file() -> None:
    cfg = load_config(None, env={})
    assert cfg.mqtt.port == 1883 and cfg.service.clock == "wall" and cfg.influx.url == ""


def test_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[mqtt]\nhost = "broker.local"\nport = 8883\n[influx]\nurl = "http://db:8086"\n')
    cfg = load_config(f, env={"CROWDFLOW_MQTT_PORT": "1999", "CROWDFLOW_CONFIG": "ignored"})
    assert cfg.mqtt.host == "broker.local"
    assert cfg.mqtt.port == 1999  # the environment wins over the file, and "1999" becomes an int
    assert cfg.influx.url == "http://db:8086"


def test_typo_in_key_names_file_section_and_suggests(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[mqtt]\nhots = "x"\n')
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    msg = str(e.value)
    assert str(f) in msg and "[mqtt]" in msg and "'hots'" in msg and "did you mean 'host'" in msg


def test_unknown_section(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[mqqt]\nhost = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown section \[mqqt\].*did you mean 'mqtt'"):
        load_config(f, env={})


def test_bad_value_type_and_choice(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[service]\nclock = "sundial"\n')
    with pytest.raises(ConfigError, match="clock"):
        load_config(f, env={})
    with pytest.raises(ConfigError, match="port"):
        load_config(None, env={"CROWDFLOW_MQTT_PORT": "eighteen"})


def test_env_typo_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"CROWDFLOW_MQTT_HSOT.*did you mean 'host'"):
        load_config(None, env={"CROWDFLOW_MQTT_HSOT": "x"})


def test_unreadable_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.toml", env={})


def test_a_publisher_password_without_its_user_names_both_keys(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[mqtt]\nusername = "crowdflow"\npublisher_password = "s3cret"\n')
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    msg = str(e.value)
    assert "publisher_password" in msg and "publisher_username" in msg and "s3cret" not in msg
    with pytest.raises(ConfigError, match="publisher_username"):
        load_config(None, env={"CROWDFLOW_MQTT_PUBLISHER_PASSWORD": "x"})
    both = load_config(None, env={"CROWDFLOW_MQTT_PUBLISHER_PASSWORD": "x", "CROWDFLOW_MQTT_PUBLISHER_USERNAME": "out"})
    assert both.mqtt.publisher_username == "out"


def test_push_port_defaults_to_the_next_port_and_can_be_off_or_set() -> None:
    from crowdflow.config import push_port_of

    assert push_port_of(load_config(None, env={}).dashboard) == 8001
    assert push_port_of(load_config(None, env={"CROWDFLOW_DASHBOARD_PORT": "9000"}).dashboard) == 9001
    assert push_port_of(load_config(None, env={"CROWDFLOW_DASHBOARD_PUSH_PORT": "off"}).dashboard) is None
    assert push_port_of(load_config(None, env={"CROWDFLOW_DASHBOARD_PUSH_PORT": "0"}).dashboard) is None
    assert push_port_of(load_config(None, env={"CROWDFLOW_DASHBOARD_PUSH_PORT": "9100"}).dashboard) == 9100


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[dashboard]\nport = 8000\npush_port = 8000\n", "dashboard's own port"),
        ("[dashboard]\npush_port = 70000\n", "not a port"),
        ("[dashboard]\npush_port = -1\n", "not a port"),
        ('[dashboard]\npush_port = "sometimes"\n', "push_port"),
        ("[dashboard]\npush_port = true\n", "push_port"),
        ("[dashboard]\nport = 65535\n", "65536 is not a port"),
        ('[dashboard]\npush_url = "http://x/ws"\n', "push_url"),
    ],
)
def test_bad_push_settings_are_refused_with_the_key_named(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(f, env={})
