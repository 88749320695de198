"""InfluxDB 2.x / 3.x through influxdb-client's batching WriteApi, history through Flux.

Written the way influxdb-client documents it: `InfluxDBClient(url, token, org)`, a batching
`write_api(write_options=WriteOptions(...))` with success/error/retry callbacks that feed `StoreStats`,
records given as line-protocol strings (our encoder: ~1 µs a point; the library's Point costs ~7-10 µs) at
nanosecond precision. `close()` calls `write_api.close()` — the only thing that flushes: `flush()` is a no-op
and unflushed points are lost without it — then `client.close()`.

Semantics that differ from the 1.x store, because they are the library's: a batch is retried at most
`max_retries` times (for at most `max_retry_time_s`) and then counted as failed; the library's own buffer is
unbounded, so this store counts points handed over but not yet answered for, and drops (and counts) new ones
beyond `max_queue` — the newest, not the oldest, since the library's buffer cannot be trimmed.

With `spool_dir` set (as open_store does), points that cannot be written wait on disk instead: the library's
batching WriteApi cannot hand a failed batch back in order (its retries run beside later batches, and a batch
it gives up on is gone), so this store then writes through the library's SYNCHRONOUS WriteApi from our own
`Batcher`, which spools, replays in order at a bounded rate and keeps the 1.x store's semantics
(store/batcher.py, docs/storage.md). The library's own retries stay off (the client's default) so that a
failure reaches the Batcher at once.

What is tested, and how (tests/store/test_influx_v2.py): only InfluxDB 1.6 exists on the build machines,
so the writer is tested against a small local HTTP server implementing `POST /api/v2/write` — the points
arrive there with org, bucket, precision=ns and `Authorization: Token ...`; close() flushes everything; a 5xx
is retried and then written, a 4xx is counted as failed with its message. history() is tested against canned
annotated-CSV answers on `POST /api/v2/query`, which checks the Flux we send and how we read the answer, not
that a real 2.x/3.x server computes it as intended. NOT tested against a real InfluxDB 2.x or 3.x server.
The spool path (tests/store/test_spool_influx_v2.py) is tested the same way: the fake answering 503, then
stopped (connection refused) and started again on the same port, and the lines arriving there in order, once
each; how a real 2.x/3.x server answers while it starts up, or after losing its own unflushed data, is not.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS, WriteOptions
from influxdb_client.domain.write_precision import WritePrecision
from reactivex.scheduler import ThreadPoolScheduler
from urllib3.exceptions import HTTPError as Urllib3Error

from domain.site import Site
from domain.values import Reading, ZoneState
from store.base import (
    HISTORY_FIELDS,
    HISTORY_MAX_FIELDS,
    HISTORY_MEAN_FIELDS,
    StoreError,
    StoreStats,
    StoreUnreachableError,
)
from store.batcher import Batcher, Permanent, Transient
from store.lineprotocol import ZONE_STATE, Encoder, ts_ns
from store.spool import DEFAULT_MAX_BYTES, Spool

log = logging.getLogger(__name__)

_DROPPED = re.compile(r"dropped=(\d+)")


def flux_string(text: str) -> str:
    """A Flux string literal: backslash, double quote and `${` (interpolation) escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def history_flux(bucket: str, zone: str, since: float, until: float, every_s: float) -> str:
    """Means per window (start-stamped, aligned to the epoch like InfluxQL's GROUP BY time), the maximum of
    HISTORY_MAX_FIELDS (the worst level, the day's arrivals), one row per window with data."""
    every = f"{max(1, round(every_s * 1000))}ms"
    means = " or ".join(f'r._field == "{f}"' for f in HISTORY_MEAN_FIELDS)
    maxes = " or ".join(f'r._field == "{f}"' for f in HISTORY_MAX_FIELDS)
    return (
        f"data = from(bucket: {flux_string(bucket)})\n"
        f"  |> range(start: time(v: {ts_ns(since)}), stop: time(v: {ts_ns(until)}))\n"
        f'  |> filter(fn: (r) => r._measurement == "{ZONE_STATE}" and r.zone == {flux_string(zone)})\n'
        "means = data\n"
        f"  |> filter(fn: (r) => {means})\n"
        f'  |> aggregateWindow(every: {every}, fn: mean, createEmpty: false, timeSrc: "_start")\n'
        "highest = data\n"
        f"  |> filter(fn: (r) => {maxes})\n"
        f'  |> aggregateWindow(every: {every}, fn: max, createEmpty: false, timeSrc: "_start")\n'
        "  |> toFloat()\n"
        "union(tables: [means, highest])\n"
        "  |> group()\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> sort(columns: ["_time"])\n'
    )


def _lines_in(data: object) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n") + 1 if data else 0
    if isinstance(data, str):
        return data.count("\n") + 1 if data else 0
    return 1


class InfluxV2Store:
    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        retry_interval_s: float = 1.0,
        max_retries: int = 10,
        max_retry_delay_s: float = 30.0,
        max_retry_time_s: float = 300.0,
        max_queue: int = 200_000,
        close_timeout_s: float = 10.0,
        timeout_s: float = 10.0,
        site: Site | None = None,
        spool_dir: Path | None = None,
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        spool_segment_bytes: int | None = None,
        high_water: int | None = None,
        replay_rate: float = 25_000.0,
    ) -> None:
        """Without `spool_dir`, the library's batching WriteApi (its retries: `retry_interval_s`,
        `max_retries`, ...); with it, our Batcher and disk spool (`retry_interval_s` is the first backoff,
        `max_retry_delay_s` the longest, `close_timeout_s` as documented there)."""
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.max_queue = max_queue
        self.stats = StoreStats()
        self._encoder = Encoder(self.stats, site)
        self._lock = threading.Lock()
        self._pending = 0  # points handed to the library and not yet reported written or failed
        self._closed = False
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=round(timeout_s * 1000))
        self._batcher: Batcher | None = None
        if spool_dir is not None:
            self._sync_api = self._client.write_api(write_options=SYNCHRONOUS)
            spool = Spool(spool_dir, self.stats, max_bytes=spool_max_bytes, segment_bytes=spool_segment_bytes)
            self._batcher = Batcher(
                self._send_sync,
                self.stats,
                batch_size=batch_size,
                flush_interval_s=flush_interval_s,
                max_queue=max_queue,
                retry_initial_s=retry_interval_s,
                retry_max_s=max_retry_delay_s,
                close_timeout_s=close_timeout_s,
                name=f"influx-v2-writer:{bucket}",
                spool=spool,
                high_water=high_water,
                replay_rate=replay_rate,
            )
            return
        # Our own scheduler: WriteOptions' default one is a single instance shared by every WriteOptions.
        self._scheduler = ThreadPoolScheduler(max_workers=1)
        options = WriteOptions(
            batch_size=batch_size,
            flush_interval=round(flush_interval_s * 1000),
            retry_interval=round(retry_interval_s * 1000),
            max_retries=max_retries,
            max_retry_delay=round(max_retry_delay_s * 1000),
            max_retry_time=round(max_retry_time_s * 1000),
            exponential_base=2,
            max_close_wait=round(close_timeout_s * 1000),
            write_scheduler=self._scheduler,
        )
        self._write_api = self._client.write_api(
            write_options=options,
            success_callback=self._on_success,
            error_callback=self._on_error,
            retry_callback=self._on_retry,
        )

    # -- Store ----------------------------------------------------------------------------------------------

    def write_states(self, states: Sequence[ZoneState]) -> None:
        self._submit(self._encoder.states(states))

    def write_readings(self, readings: Sequence[Reading]) -> None:
        self._submit(self._encoder.readings(readings))

    def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[dict[str, float]]:
        flux = history_flux(self.bucket, zone, since, until, every_s)
        try:
            tables = self._client.query_api().query(flux, org=self.org)
        except InfluxDBError as err:
            raise StoreError(f"InfluxDB query failed: {err}") from err
        except Urllib3Error as err:
            raise StoreUnreachableError(f"InfluxDB at {self.url} is unreachable: {err}") from err
        rows: list[dict[str, float]] = []
        for table in tables:
            for rec in table.records:
                row = {"ts": rec.values["_time"].timestamp()}
                for f in HISTORY_FIELDS:
                    v = rec.values.get(f)
                    if v is not None:
                        row[f] = float(v)
                rows.append(row)
        rows.sort(key=lambda r: r["ts"])
        return rows

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._batcher is not None:
            self._batcher.close()
            self._client.close()  # type: ignore[no-untyped-call]
            return
        # The library leaves these two unannotated.
        self._write_api.close()  # type: ignore[no-untyped-call]  # flushes; waits at most max_close_wait
        self._client.close()  # type: ignore[no-untyped-call]
        self._scheduler.executor.shutdown(wait=False)
        with self._lock:
            if self._pending:  # the library gave up waiting: say so rather than lose them quietly
                self.stats.points_failed += self._pending
                self.stats.last_error = f"close() timed out with {self._pending} points unwritten"
                self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending if self._batcher is None else self._batcher.pending

    # -- writing; the library's thread calls the callbacks ----------------------------------------------

    def _submit(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._batcher is not None:
            self._batcher.put(lines)
            return
        with self._lock:
            if self._closed:
                self.stats.points_failed += len(lines)
                self.stats.last_error = f"{len(lines)} points handed to the store after close()"
                return
            room = self.max_queue - self._pending
            if room < len(lines):
                dropped = len(lines) - max(room, 0)
                self.stats.queue_dropped += dropped
                lines = lines[: max(room, 0)]
            self._pending += len(lines)
        if lines:
            self._write_api.write(
                bucket=self.bucket,
                org=self.org,
                record=lines,
                # annotated as the class, though its constants are plain str
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )

    def _send_sync(self, body: bytes) -> None:
        """One request through the SYNCHRONOUS WriteApi, its failure sorted into Transient or Permanent."""
        try:
            self._sync_api.write(
                bucket=self.bucket,
                org=self.org,
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except InfluxDBError as err:
            status = getattr(err, "status", None) or 0
            text = f"InfluxDB write failed ({status}): {err}"
            if status == 429 or status >= 500 or status == 0:
                raise Transient(text) from err
            m = _DROPPED.search(str(err))
            raise Permanent(text, failed=int(m.group(1)) if m else None) from err
        except (Urllib3Error, OSError) as err:
            raise Transient(f"InfluxDB at {self.url} unreachable: {type(err).__name__}: {err}") from err

    def _on_success(self, conf: tuple[str, str, str], data: str | bytes) -> None:
        n = _lines_in(data)
        with self._lock:
            self._pending -= n
            self.stats.points_written += n
            self.stats.batches += 1

    def _on_error(self, conf: tuple[str, str, str], data: str | bytes, exception: Exception) -> None:
        n = _lines_in(data)
        m = _DROPPED.search(str(exception))
        failed = min(int(m.group(1)), n) if m else n  # a partial write keeps the other points
        with self._lock:
            self._pending -= n
            self.stats.points_failed += failed
            self.stats.points_written += n - failed
            self.stats.batches += 1
            self.stats.last_error = f"InfluxDB refused {failed} of {n} points: {exception}"

    def _on_retry(self, conf: tuple[str, str, str], data: str | bytes, exception: Exception) -> None:
        with self._lock:
            self.stats.retries += 1
            self.stats.last_error = f"retrying after: {exception}"
