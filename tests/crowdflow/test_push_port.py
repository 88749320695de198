"""The push port at startup: bound by the service itself (a taken one stops the start with a message naming the
setting), and the warnings for push settings that would probably leave the walls dark."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from crowdflow.cli import main
from crowdflow.config import load_config, push_warnings

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_a_taken_push_port_stops_serve_at_startup_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken, socket.create_server(("127.0.0.1", 0)) as spare:
        push, port = taken.getsockname()[1], spare.getsockname()[1]
        spare.close()  # the dashboard's port: free (it is never reached: the push port fails first)
        config = tmp_path / "crowdflow.toml"
        config.write_text(
            f'[service]\ndata_dir = "{tmp_path}"\nsite = "{FIXTURES / "mini_site.toml"}"\n'
            f"[dashboard]\nport = {port}\npush_port = {push}\n"
        )
        assert main(["serve", "--config", str(config)]) == 2
    said = capsys.readouterr().err
    assert f"[dashboard] push_port = {push}: cannot listen on 127.0.0.1:{push}" in said, said
    assert 'push_port = "off"' in said and "Traceback" not in said


def test_push_settings_that_probably_leave_the_walls_dark_are_warned_about() -> None:
    cfg = load_config(None, env={})
    assert push_warnings(cfg) == []  # loopback only: the pages reach the push port directly
    cfg.dashboard.allowed_hosts = ["127.0.0.1", "wall.example.cn"]
    (warning,) = push_warnings(cfg)
    assert "push_url is empty and allowed_hosts names wall.example.cn" in warning and 'push_url = "/ws"' in warning
    cfg.dashboard.push_url = "/ws"
    assert push_warnings(cfg) == []
    cfg.dashboard.push_url = "ws://wall.example.cn:8001/ws"
    cfg.dashboard.allowed_origins = ["https://wall.example.cn"]
    (warning,) = push_warnings(cfg)
    assert "plain ws://" in warning and "https://wall.example.cn" in warning
    cfg.dashboard.push_port = "off"
    assert push_warnings(cfg) == []
