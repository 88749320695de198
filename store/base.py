"""The one protocol every time-series store implements, its counters and its errors.

A store sits beside the hot path: `write_states` / `write_readings` only enqueue (a background thread does the
I/O), `history` serves charts and may block (call it from a worker thread in async code), and `close` writes
everything still buffered before it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from domain.values import Reading, ZoneState

# Columns of a history row, besides "ts" (bucket start, epoch seconds). A row leaves out a field with no
# value in its bucket (expected_inflow_per_min and arrivals_today are absent from history written before
# they were stored).
HISTORY_FIELDS: tuple[str, ...] = (
    "occupancy",
    "share",
    "density",
    "inflow_per_min",
    "outflow_per_min",
    "level",
    "expected_inflow_per_min",
    "arrivals_today",
)
# Fields a bucket keeps the maximum of: the worst level, and the day's arrivals (a running count, so its
# maximum is where it stood at the bucket's end, but for a bucket spanning midnight). The others are means.
HISTORY_MAX_FIELDS: tuple[str, ...] = ("level", "arrivals_today")
HISTORY_MEAN_FIELDS: tuple[str, ...] = tuple(f for f in HISTORY_FIELDS if f not in HISTORY_MAX_FIELDS)


@dataclass
class StoreStats:
    """Counters a store keeps; every point handed to a store ends up in exactly one of them
    (written, failed, invalid, dropped from the queue, dropped from the disk spool, still pending in the disk
    spool, or ignored by design) once `close()` has returned; the lines of a torn spool record (a crash
    mid-write) are the one exception, counted as records in `spool_torn`.

    Each counter is written by one thread only, so reads from another thread are a consistent-enough snapshot.
    """

    points_written: int = 0
    points_failed: int = 0  # the server refused them (e.g. a field type conflict) or close() timed out
    batches: int = 0  # requests (or SQLite transactions) that completed, successfully or not
    retries: int = 0  # transient failures retried (connection refused, 5xx, 429)
    queue_dropped: int = 0  # the bounded buffer was full: oldest points dropped
    fields_skipped: int = 0  # NaN/inf field values left out of an otherwise written point
    points_invalid: int = 0  # points that could not be formatted at all (no finite field left)
    points_ignored: int = 0  # accepted but not kept by design (the embedded store keeps no readings)
    last_error: str = ""
    # The InfluxDB stores' disk spool (store/spool.py, docs/storage.md); zero without one. spooled and replayed
    # count lines passing through it; spool_pending lines are on disk awaiting replay (kept across restarts).
    spooled: int = 0  # lines written to the spool: server unreachable, or the memory buffer past high water
    replayed: int = 0  # spooled lines written to the server on recovery (also counted in points_written)
    spool_dropped: int = 0  # spooled lines deleted unreplayed: the byte bound was reached, oldest first
    spool_dropped_from_ts: float = 0.0  # event-time range (epoch s) of everything spool_dropped so far
    spool_dropped_until_ts: float = 0.0
    spool_torn: int = 0  # spool records found torn or corrupt (a crash mid-write) and skipped
    spool_pending: int = 0  # lines on disk not yet replayed
    spool_bytes: int = 0  # the spool's size on disk
    spool_oldest_ts: float = 0.0  # event time (epoch s) of the oldest line waiting in the spool; 0 when empty

    def as_dict(self) -> dict[str, int | float | str]:
        return asdict(self)


@runtime_checkable
class Store(Protocol):
    stats: StoreStats

    def write_states(self, states: Sequence[ZoneState]) -> None:
        """Enqueue zone states; never blocks on I/O."""
        ...

    def write_readings(self, readings: Sequence[Reading]) -> None:
        """Enqueue sensor readings; never blocks on I/O."""
        ...

    def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[dict[str, float]]:
        """zone_state rows in [since, until), one per `every_s` bucket that has data, oldest first.

        Each row has "ts" (bucket start) and HISTORY_FIELDS that have a value in the bucket: means over it,
        the maximum for HISTORY_MAX_FIELDS (`level` the worst one, `arrivals_today` the latest count).
        Blocking: run it in a thread from async code.
        """
        ...

    def close(self) -> None:
        """Write every buffered point (bounded by a timeout), then stop. Idempotent."""
        ...


class StoreError(Exception):
    """Base of the store's errors."""


class StoreConfigError(StoreError, ValueError):
    """The store cannot be opened as configured; the message says what to set."""


class StoreUnreachableError(StoreError, ConnectionError):
    """The configured server did not answer."""
