from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from store.base import Store, StoreConfigError, StoreStats, StoreUnreachableError
from store.embedded import EmbeddedStore
from store.factory import SPOOL_DIR, detect_api, open_store
from store.influx_v1 import InfluxV1Store
from store.influx_v2 import InfluxV2Store
from store.spool import Spool
from store.spool_location import destination_dir
from tests.servers import Server, free_port, influx_query
from tests.store.conftest import T0, state, wait_for
from tests.store.fake_influx2 import FakeInflux2


def test_no_url_opens_the_embedded_store(tmp_path: Path) -> None:
    store = open_store(None, embedded_path=tmp_path / "h.sqlite")
    assert isinstance(store, EmbeddedStore) and isinstance(store, Store)
    store.close()
    assert (tmp_path / "h.sqlite").exists()


def test_picks_v1_on_a_real_influxdb_1_6(shared_influxdb: Server) -> None:
    assert detect_api(shared_influxdb.url) == "v1"
    store = open_store(shared_influxdb.url, database="factory")
    assert isinstance(store, InfluxV1Store)
    store.write_states([state("z", T0)])
    store.close()
    res = influx_query(shared_influxdb.url, "factory", "SELECT count(occupancy) FROM zone_state")
    assert res["results"][0]["series"][0]["values"][0][1] == 1  # type: ignore[index]


@pytest.mark.parametrize("version", ["v2.7.11", "3.0.1"])
def test_picks_v2_for_2x_and_3x(fake: FakeInflux2, version: str) -> None:
    fake.version = version
    store = open_store(fake.url, token="t", org="o", bucket="b")
    assert isinstance(store, InfluxV2Store)
    store.close()


def test_v2_without_token_org_bucket_says_what_to_set(fake: FakeInflux2) -> None:
    with pytest.raises(StoreConfigError, match="missing: token, bucket"):
        open_store(fake.url, org="o")


def test_unreachable_server_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnreachableError, match=r"did not answer GET /ping.*embedded store"):
        open_store(url)
    with pytest.raises(StoreUnreachableError, match="unreachable"):
        open_store(url, api="v1")


def test_not_an_influxdb_or_not_a_url(fake: FakeInflux2, tmp_path: Path) -> None:
    fake.version = ""
    with pytest.raises(StoreConfigError, match="no InfluxDB version header"):
        open_store(fake.url)
    with pytest.raises(StoreConfigError, match="http:// or https://"):
        open_store("localhost:8086")
    for bad in ("http://localhost:99999", "http://localhost:80a"):  # with a spool, the store would open on it
        with pytest.raises(StoreConfigError, match="bad port"):
            open_store(bad, api="v1", embedded_path=tmp_path / "ts.db")
    # an explicit api skips the probe
    store = open_store(fake.url, api="v2", token="t", org="o", bucket="b")
    assert isinstance(store, InfluxV2Store)
    store.close()


def test_a_wrong_guess_spool_waits_until_the_detected_store_can_open_then_replays(
    fake: FakeInflux2, tmp_path: Path
) -> None:
    """Points an earlier start spooled as 1.x (api "auto", server down, no token: the guess) while the server
    is really 2.x: a start that finds the 2.x settings incomplete refuses and moves nothing (the spool's v2
    directory depends on the org still to be set); once they are complete, the points are replayed there."""
    fake.version = "v2.7.11"
    root = tmp_path / SPOOL_DIR
    spooled = Spool(destination_dir(root, api="v1", url=fake.url, name="crowdflow"), StoreStats(), max_bytes=1 << 20)
    spooled.append([f"zone_state,zone=z occupancy={i}.0 {int((T0 + i) * 1e9)}" for i in range(12)])
    spooled.close()
    settings: dict[str, Any] = {"api": "auto", "bucket": "b", "embedded_path": tmp_path / "h.sqlite"}
    with pytest.raises(StoreConfigError, match="missing: token, org"):
        open_store(fake.url, **settings)
    dirs = {d.name.split("-")[0]: len(list(d.glob("*.seg"))) for d in root.iterdir() if d.is_dir()}
    assert dirs.get("v1", 0) >= 1 and dirs.get("v2", 0) == 0, dirs
    store = open_store(fake.url, token="t", org="o", **settings)
    assert isinstance(store, InfluxV2Store)
    wait_for(lambda: store.stats.spool_pending == 0 and store.stats.replayed == 12)
    store.close()
    assert sorted(int(float(ln.split("occupancy=")[1].split()[0])) for ln in fake.lines()) == list(range(12))
