from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server, start_mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Server]:
    """The shared Mosquitto fixture, but one that can save its persistence file.

    Started as root, Mosquitto drops to the `mosquitto` user, which cannot write into pytest's tmp_path
    (0700, owned by root): it logs "Error saving in-memory database" at shutdown and forgets every persistent
    session across a restart. `user <us>` keeps it as the user running the tests (no effect when not root).
    Drop this override once tests/servers.py adds the line itself.
    """
    srv = start_broker(tmp_path / "mosquitto")
    yield srv
    srv.stop()


def start_broker(workdir: Path, extra_conf: str = "") -> Server:
    """start_mosquitto, running as the user running the tests, so it can read and write its files."""
    return start_mosquitto(workdir, extra_conf=f"user {pwd.getpwuid(os.geteuid()).pw_name}\n{extra_conf}")
