from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.loader import load_site
from domain.site import Site
from tests.servers import Server, start_influxdb, start_mosquitto

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def mini_site() -> Site:
    return load_site(FIXTURES / "mini_site.toml")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Server]:
    srv = start_mosquitto(tmp_path / "mosquitto")
    yield srv
    srv.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[Server]:
    srv = start_influxdb(tmp_path / "influxdb")
    yield srv
    srv.stop()
