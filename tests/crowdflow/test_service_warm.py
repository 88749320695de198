import time
from pathlib import Path

from crowdflow.config import load_config
from crowdflow.service import Service
from domain.loader import load_site
from domain.values import ZoneState
from store.embedded import EmbeddedStore

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_a_fresh_service_learns_from_stored_history(tmp_path: Path) -> None:
    site = load_site(FIXTURES / "mini_site.toml")
    now = time.time()
    store = EmbeddedStore(tmp_path / "history.sqlite")
    for m in range(24 * 60, 0, -1):  # the last day, a state per minute per zone
        ts = now - m * 60
        store.write_states(
            [
                ZoneState(zone=z, ts=ts, occupancy=100, capacity=2000, share=0.05, density=0.05,
                          inflow_per_min=20 + (m % 7), outflow_per_min=20, arrivals_today=0)
                for z in site.zones
            ]
        )  # fmt: skip
    store.close()
    cfg = load_config(None, env={})
    cfg.service.data_dir = str(tmp_path)
    cfg.service.site = str(FIXTURES / "mini_site.toml")
    svc = Service(cfg, site=site, quiet=True)
    cold = svc.pipeline.engine.surge.to_state()
    try:
        learned = svc.warm_from_history(days=2)
    finally:
        svc.store.close()
    # Guarded learning skips rows that look anomalous against the profile; most of a day still teaches.
    assert learned > 24 * 60
    assert svc.pipeline.engine.surge.to_state() != cold


def test_a_restart_without_its_snapshot_keeps_todays_arrivals_from_the_store(tmp_path: Path) -> None:
    """Found in review: the headline compared arrivals since the restart with the profile since midnight."""
    site = load_site(FIXTURES / "mini_site.toml")
    cfg = load_config(None, env={})
    cfg.service.data_dir = str(tmp_path)
    cfg.service.site = str(FIXTURES / "mini_site.toml")
    now = time.time()
    probe = Service(cfg, site=site, quiet=True)
    midnight = probe.pipeline.profile.local_midnight(now)
    probe.store.close()

    def state(ts: float, arrivals: int) -> ZoneState:
        return ZoneState(zone="seg-1", ts=ts, occupancy=100, capacity=2000, share=0.05, density=0.05,
                         inflow_per_min=20, outflow_per_min=20, arrivals_today=arrivals)  # fmt: skip

    store = EmbeddedStore(tmp_path / "history.sqlite")
    today = midnight + (now - midnight) / 2
    store.write_states([state(midnight - 3600, 90_000), state(today - 60, 4_000), state(today, 5_000)])
    store.close()
    svc = Service(cfg, site=site, quiet=True)
    try:
        svc.warm_from_history(days=2)
        states = {s.zone: s for s in svc.pipeline.engine.tracker.snapshot(now)}
    finally:
        svc.store.close()
    assert states["seg-1"].arrivals_today == 5_000, "today's count, not yesterday's and not zero"
    assert states["plaza"].arrivals_today == 0
