"""InfluxDB 2.x / 3.x: line protocol written through influxdb-client's SYNCHRONOUS WriteApi by our `Batcher`,
history through Flux.

Written the way influxdb-client documents it: `InfluxDBClient(url, token, org)`, `write_api(write_options=
SYNCHRONOUS)`, and `write(bucket, org, record, write_precision)` with the batch as line protocol (our encoder:
~1 µs a point; the library's Point costs ~7-10 µs) at nanosecond precision; a failure raises (an
`InfluxDBError` carrying the HTTP status, or urllib3's error when the server is unreachable) and is sorted
into Transient or Permanent. The library's own HTTP retries stay off (the client's default), so a failure
reaches the Batcher at once.

Every write goes through the same writer as the 1.x store (store/writer.py): one `Batcher`, with the disk
spool when a directory is given, so batching, order, retries, counting and the spool's bound are the same for
both APIs (store/batcher.py, docs/storage.md). The library's batching WriteApi is not used: it cannot hand a
failed batch back in order (its retries run beside later batches, and a batch it gives up on is gone), and
its buffer cannot be bounded by dropping the oldest points.

What is tested, and how (tests/store/test_influx_v2.py, tests/store/test_spool_influx_v2.py): only InfluxDB
1.6 exists on the build machines, so the writer is tested against a small local HTTP server implementing
`POST /api/v2/write` — the points arrive there with org, bucket, precision=ns and `Authorization: Token ...`;
close() flushes everything; a 5xx is retried and then written, a 4xx is counted as failed with its message;
with a spool, the fake answering 503, then stopped (connection refused) and started again on the same port,
and the lines arriving there in order, once each. history() is tested against canned annotated-CSV answers
on `POST /api/v2/query`, which checks the Flux we send and how we read the answer, not that a real 2.x/3.x
server computes it as intended. NOT tested against a real InfluxDB 2.x or 3.x server: how one answers while
it starts up, or after losing its own unflushed data, is not known here.
"""

from __future__ import annotations

import re
from pathlib import Path

from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from urllib3.exceptions import HTTPError as Urllib3Error

from domain.site import Site
from store.base import (
    HISTORY_FIELDS,
    HISTORY_MAX_FIELDS,
    HISTORY_MEAN_FIELDS,
    StoreError,
    StoreUnreachableError,
)
from store.batcher import Permanent, Transient
from store.lineprotocol import ZONE_STATE, ts_ns
from store.writer import WriterSettings, WriterStore

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


class InfluxV2Store(WriterStore):
    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        timeout_s: float = 10.0,
        site: Site | None = None,
        spool_dir: Path | None = None,
        writer: WriterSettings | None = None,
    ) -> None:
        """Writes to `bucket` of `org` with an API `token`; `spool_dir` and `writer`: see WriterStore."""
        super().__init__(url, site)
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=round(timeout_s * 1000))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._start_writer(self._send, name=f"influx-v2-writer:{bucket}", spool_dir=spool_dir, writer=writer)

    # -- Store ----------------------------------------------------------------------------------------------

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
        if self._close_writer():
            self._client.close()  # type: ignore[no-untyped-call]  # the library leaves it unannotated

    # -- writing, on the Batcher's thread --------------------------------------------------------------------

    def _send(self, body: bytes) -> None:
        """One request through the SYNCHRONOUS WriteApi, its failure sorted into Transient or Permanent."""
        try:
            self._write_api.write(
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
