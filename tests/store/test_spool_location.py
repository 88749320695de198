"""One spool directory per destination (store/spool_location.py): points spooled for one bucket, database or
server are replayed there and nowhere else, and a spool an earlier version left in `influx-spool/` itself is
moved into the configured destination's directory and replayed there, once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store.base import Store, StoreStats
from store.factory import SPOOL_DIR, open_store
from store.spool import Spool
from store.spool_location import adopt_legacy, destination_dir
from tests.store.conftest import T0, state, wait_for
from tests.store.fake_influx2 import FakeInflux2

T0_NS = int(T0) * 10**9


def lines(start: int, n: int) -> list[str]:
    return [f"zone_state,zone=z occupancy={i}i {T0_NS + i * 10**9}" for i in range(start, start + n)]


def indices(lines_: list[str]) -> list[int]:
    return [(int(ln.rpartition(" ")[2]) - T0_NS) // 10**9 for ln in lines_]


def read_back(directory: Path) -> list[int]:
    """Every line a spool in `directory` would replay, in order, as point indices."""
    spool = Spool(directory, StoreStats())
    out: list[int] = []
    while (rec := spool.peek()) is not None:
        out += indices(rec.lines)
        spool.consume(rec)
    spool.close()
    return out


def legacy_spool(root: Path, batches: int, *, replayed: int = 0) -> None:
    """A spool as an earlier version left it in `root` itself: `batches` records of 10 lines over several
    segments, the first `replayed` records already replayed (so its cursor points inside the head segment)."""
    spool = Spool(root, StoreStats(), max_bytes=1 << 20, segment_bytes=4096)
    for b in range(batches):
        spool.append(lines(b * 10, 10))
    for _ in range(replayed):
        rec = spool.peek()
        assert rec is not None
        spool.consume(rec)
    spool.close()


def test_each_destination_has_its_own_directory_with_a_safe_name(tmp_path: Path) -> None:
    def where(
        api: str = "v1", url: str = "http://influx.example.org:8086", name: str = "crowdflow", org: str = ""
    ) -> Path:
        return destination_dir(tmp_path, api=api, url=url, name=name, org=org or None)  # type: ignore[arg-type]

    base = where()
    assert base.parent == tmp_path and base.name.startswith("v1-crowdflow-influx.example.org_8086-")
    others = [
        where(api="v2"),
        where(name="crowdflow2"),
        where(url="http://influx.example.org:8087"),
        where(url="https://influx.example.org:8086"),
        where(url="http://other.example.org:8086"),
        where(name="crowd/flow"),
        where(name="crowd_flow"),  # the same safe text as "crowd/flow", told apart by the hash
        where(api="v2", org="other-org"),
    ]
    assert len({base, *others}) == len(others) + 1
    # The same server written differently is the same destination; credentials never reach the name.
    assert where(url="http://INFLUX.example.org:8086/") == base
    assert where(url="http://user:s3cret@influx.example.org:8086") == base
    for d in (base, *others, where(name="../../etc"), where(name="")):
        assert d.parent == tmp_path and "/" not in d.name and d.name not in (".", "..") and len(d.name) < 200
        assert "s3cret" not in d.name


def test_two_buckets_on_one_data_directory_never_replay_into_each_other(fake: FakeInflux2, tmp_path: Path) -> None:
    data = tmp_path / "history.sqlite"

    def store(bucket: str) -> Store:
        return open_store(fake.url, api="v2", token="t", org="o", bucket=bucket, embedded_path=data)

    a, b = store("a"), store("b")  # at the same time: each spool has its own lock
    fake.stop()
    a.write_states([state("z", T0 + i) for i in range(5)])
    b.write_states([state("z", T0 + i) for i in range(100, 103)])
    a.close()
    b.close()
    assert (a.stats.spool_pending, b.stats.spool_pending) == (5, 3)
    fake.start()
    again_b = store("b")  # the service now writes to bucket b only: a's points stay on disk for a
    wait_for(lambda: again_b.stats.spool_pending == 0)
    again_b.close()
    assert {w.params["bucket"] for w in fake.writes()} == {"b"} and len(fake.lines()) == 3
    again_a = store("a")
    assert again_a.stats.spool_pending == 5
    wait_for(lambda: again_a.stats.spool_pending == 0)
    again_a.close()
    by_bucket: dict[str, list[int]] = {}
    for w in fake.writes():
        by_bucket.setdefault(w.params["bucket"], []).extend(indices(w.body.decode().split("\n")))
    assert by_bucket == {"a": list(range(5)), "b": [100, 101, 102]}


def test_a_spool_left_by_an_earlier_version_is_replayed_to_the_configured_destination_once(
    fake: FakeInflux2, tmp_path: Path
) -> None:
    root = tmp_path / SPOOL_DIR
    legacy_spool(root, 40, replayed=3)  # 400 lines, 30 already replayed by the earlier version
    assert len(list(root.glob("*.seg"))) > 2
    store = open_store(fake.url, api="v2", token="t", org="o", bucket="b", embedded_path=tmp_path / "h.sqlite")
    store.write_states([state("z", T0 + i) for i in range(400, 410)])  # new points queue behind the old ones
    wait_for(lambda: store.stats.points_written == 380)
    store.close()
    assert indices(fake.lines()) == list(range(30, 410)) and store.stats.replayed == 370 + store.stats.spooled
    assert not list(root.glob("*.seg")) and not (root / "cursor").exists()
    # Opened again (or for another destination): nothing is left to replay a second time.
    again = open_store(fake.url, api="v2", token="t", org="o", bucket="other", embedded_path=tmp_path / "h.sqlite")
    again.close()
    assert again.stats.spool_pending == 0 and again.stats.replayed == 0 and len(fake.lines()) == 380


def test_a_legacy_spool_goes_behind_what_the_destination_already_holds(tmp_path: Path) -> None:
    root, target = tmp_path / SPOOL_DIR, tmp_path / SPOOL_DIR / "v1-db-x"
    own = Spool(target, StoreStats(), max_bytes=1 << 20, segment_bytes=4096)
    for b in range(10, 20):
        own.append(lines(b * 10, 10))
    rec = own.peek()  # one record of it replayed already: its cursor is inside its head segment
    assert rec is not None
    own.consume(rec)
    own.close()
    legacy_spool(root, 8, replayed=2)  # written after the destination's: an older version run again
    assert adopt_legacy(root, target) > 0
    assert read_back(target) == list(range(110, 200)) + list(range(20, 80))


def test_a_crash_while_moving_loses_nothing_and_the_next_open_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, target = tmp_path / SPOOL_DIR, tmp_path / SPOOL_DIR / "v2-b-x"
    legacy_spool(root, 40, replayed=3)
    segments = len(list(root.glob("*.seg")))
    real_replace, calls = os.replace, [0]

    def crash_on_the_third(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_the_third)
    with pytest.raises(OSError, match="power cut"):
        adopt_legacy(root, target)
    monkeypatch.setattr(os, "replace", real_replace)
    assert list(root.glob("*.seg")) and list(target.glob("*.seg"))  # halfway
    assert adopt_legacy(root, target) == segments - 2
    assert read_back(target) == list(range(30, 400))  # every unreplayed line once, in order


def test_a_legacy_spool_still_open_in_an_older_process_is_left_alone(tmp_path: Path) -> None:
    root, target = tmp_path / SPOOL_DIR, tmp_path / SPOOL_DIR / "v1-db-x"
    legacy_spool(root, 3)
    older = Spool(root, StoreStats())  # holds the lock, as a running older version does
    try:
        assert adopt_legacy(root, target) == 0
        assert len(list(root.glob("*.seg"))) == 1 and not target.exists()
    finally:
        older.close()
    assert adopt_legacy(root, target) == 1 and read_back(target) == list(range(30))


def test_a_move_that_fails_leaves_the_old_spool_for_the_next_start_and_the_store_opens(
    fake: FakeInflux2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / SPOOL_DIR
    legacy_spool(root, 3)

    def refuse(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError("read-only file system")

    def store() -> Store:
        return open_store(fake.url, api="v2", token="t", org="o", bucket="b", embedded_path=tmp_path / "h.sqlite")

    monkeypatch.setattr(os, "replace", refuse)
    first = store()  # ingest and alerting go on; the old points stay where they were
    monkeypatch.undo()
    first.close()
    assert first.stats.replayed == 0 and len(list(root.glob("*.seg"))) == 1
    second = store()
    wait_for(lambda: second.stats.spool_pending == 0)
    second.close()
    assert indices(fake.lines()) == list(range(30)) and not list(root.glob("*.seg"))
