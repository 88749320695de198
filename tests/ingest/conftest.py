from __future__ import annotations

from pathlib import Path

from tests.servers import Server, start_mosquitto


def start_broker(workdir: Path, extra_conf: str = "") -> Server:
    """A Mosquitto for tests that start and restart their own broker (tests/servers.py keeps it our user)."""
    return start_mosquitto(workdir, extra_conf=extra_conf)
