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
