"""How the InfluxDB stores start their writer: one `Batcher` (store/batcher.py) sending through the store's
own request function, with a disk `Spool` (store/spool.py) when a directory is given. Both InfluxDB APIs go
through here, so batching, order, retries, counting and the spool's bound are the same for both
(docs/storage.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from domain.site import Site
from domain.values import Reading, ZoneState
from store.base import StoreStats
from store.batcher import Batcher, Sender
from store.lineprotocol import Encoder
from store.spool import DEFAULT_MAX_BYTES, Spool


@dataclass(frozen=True)
class WriterSettings:
    """The writer's knobs; the defaults are the service's (docs/storage.md explains each)."""

    batch_size: int = 5000  # lines per request
    flush_interval_s: float = 1.0  # a smaller batch goes out after waiting this long
    max_queue: int = 200_000  # lines held in memory; beyond it the oldest are dropped (queue_dropped)
    retry_initial_s: float = 0.5  # first backoff after a transient failure, doubled up to retry_max_s
    retry_max_s: float = 30.0
    close_timeout_s: float = 10.0  # close() sends or replays for at most this long
    high_water: int | None = None  # lines in memory past which the writer spills to the spool (None: max_queue/2)
    replay_rate: float = 25_000.0  # spooled lines a second at most, once the server answers again
    spool_max_bytes: int = DEFAULT_MAX_BYTES  # the spool's bound on disk; the oldest segments go first
    spool_segment_bytes: int | None = None  # None: 1/16 of the bound, at most 32 MB


def start_writer(
    send: Sender, stats: StoreStats, *, name: str, spool_dir: Path | None, settings: WriterSettings
) -> Batcher:
    """The writer thread for one store; `spool_dir` None keeps points in memory only (bounded, oldest dropped)."""
    spool = (
        Spool(spool_dir, stats, max_bytes=settings.spool_max_bytes, segment_bytes=settings.spool_segment_bytes)
        if spool_dir is not None
        else None
    )
    try:
        return Batcher(
            send,
            stats,
            batch_size=settings.batch_size,
            flush_interval_s=settings.flush_interval_s,
            max_queue=settings.max_queue,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            close_timeout_s=settings.close_timeout_s,
            name=name,
            spool=spool,
            high_water=settings.high_water,
            replay_rate=settings.replay_rate,
        )
    except ValueError:
        if spool is not None:
            spool.close()  # a setting the Batcher refuses must not leave the spool's directory locked
        raise


class WriterStore:
    """The write side both InfluxDB stores share: points encoded to line protocol (the site's tags) and handed
    to the writer; the store's own request function does the I/O on the writer's thread.

    A store's `spool_dir` is where points wait on disk while the server is unreachable (store/batcher.py,
    docs/storage.md; open_store gives each destination its own); None keeps them in memory only
    (`writer.max_queue`, the oldest dropped). `writer`: WriterSettings, the defaults when None.
    """

    def __init__(self, url: str, site: Site | None) -> None:
        self.url = url.rstrip("/")
        self.stats = StoreStats()
        self._encoder = Encoder(self.stats, site)
        self._closed = False

    def _start_writer(self, send: Sender, *, name: str, spool_dir: Path | None, writer: WriterSettings | None) -> None:
        self._batcher = start_writer(
            send, self.stats, name=name, spool_dir=spool_dir, settings=writer or WriterSettings()
        )

    def write_states(self, states: Sequence[ZoneState]) -> None:
        self._batcher.put(self._encoder.states(states))

    def write_readings(self, readings: Sequence[Reading]) -> None:
        self._batcher.put(self._encoder.readings(readings))

    @property
    def pending(self) -> int:
        """Lines buffered and not yet sent."""
        return self._batcher.pending

    def _close_writer(self) -> bool:
        """Send what is buffered (store/batcher.py's close); False when the store was closed already."""
        if self._closed:
            return False
        self._closed = True
        self._batcher.close()
        return True
