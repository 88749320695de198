"""InfluxDB 1.x: line protocol POSTed to /write by a background `Batcher`, history through InfluxQL on /query.

Tested against a real influxd 1.6 (tests/store/test_influx_v1.py): every point arrives with its tags and
fields, close() writes what was buffered, a server restart mid-run loses nothing, a field type conflict is
counted, history() buckets; with a disk spool, an outage of the server (killed, restarted on the same port and
data) loses nothing and writes everything in order, exactly once (tests/store/test_spool_influx_v1.py).
Credentials go in a basic-auth header, never in the query string (query strings land in logs).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx

from domain.site import Site
from store.base import HISTORY_MAX_FIELDS, HISTORY_MEAN_FIELDS, StoreError, StoreUnreachableError
from store.batcher import Permanent, Transient
from store.lineprotocol import ZONE_STATE, ts_ns
from store.writer import WriterSettings, WriterStore

log = logging.getLogger(__name__)

_DROPPED = re.compile(r"dropped=(\d+)")


def influxql_string(text: str) -> str:
    """A single-quoted InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql_ident(text: str) -> str:
    """A double-quoted InfluxQL identifier (database, measurement)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxV1Store(WriterStore):
    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        create_database: bool = True,
        timeout_s: float = 10.0,
        site: Site | None = None,
        spool_dir: Path | None = None,
        writer: WriterSettings | None = None,
    ) -> None:
        """`database` is created at once unless `create_database` is False (or the server is down: then on the
        first write answered "database not found"); `spool_dir` and `writer`: see WriterStore."""
        super().__init__(url, site)
        self.database = database
        auth = (username, password or "") if username else None
        # One client per thread: the writer thread owns _write_http, history() callers share _query_http.
        self._write_http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout_s)
        self._query_http = httpx.Client(base_url=self.url, auth=auth, timeout=timeout_s)
        self._create_database = create_database
        if create_database:
            try:
                self._create_db()
            except StoreUnreachableError as err:
                if spool_dir is None:
                    raise
                # With a spool the store can start while the server is down: points wait on disk, and the
                # writer creates the database when a write is answered "database not found".
                log.warning("%s; starting anyway, spooling to %s until it answers", err, spool_dir)
                self.stats.last_error = str(err)
        self._start_writer(self._send, name=f"influx-v1-writer:{database}", spool_dir=spool_dir, writer=writer)

    # -- Store ----------------------------------------------------------------------------------------------

    def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[dict[str, float]]:
        every_ms = max(1, round(every_s * 1000))
        means = ", ".join(f"mean({f}) AS {f}" for f in HISTORY_MEAN_FIELDS)
        maxes = ", ".join(f"max({f}) AS {f}" for f in HISTORY_MAX_FIELDS)
        q = (
            f"SELECT {means}, {maxes} FROM {ZONE_STATE} "
            f"WHERE zone = {influxql_string(zone)} AND time >= {ts_ns(since)} AND time < {ts_ns(until)} "
            f"GROUP BY time({every_ms}ms) fill(none)"
        )
        result = self._query(q, epoch="ms")
        rows: list[dict[str, float]] = []
        for series in result.get("series", []):
            cols: list[str] = series["columns"]
            for values in series["values"]:
                row = dict(zip(cols, values, strict=True))
                out = {"ts": row.pop("time") / 1000.0}
                out.update({k: float(v) for k, v in row.items() if v is not None})
                rows.append(out)
        rows.sort(key=lambda r: r["ts"])
        return rows

    def close(self) -> None:
        if self._close_writer():
            self._write_http.close()
            self._query_http.close()

    # -- HTTP -----------------------------------------------------------------------------------------------

    def _create_db(self) -> None:
        try:
            self._query(f"CREATE DATABASE {influxql_ident(self.database)}", method="POST", db=False)
        except httpx.TransportError as err:
            raise StoreUnreachableError(
                f"InfluxDB at {self.url} is unreachable ({err}); start it or set the store URL"
            ) from err

    def _query(self, q: str, *, method: str = "GET", db: bool = True, **params: str) -> dict[str, Any]:
        """Run one InfluxQL statement; its result object. Raises StoreError with InfluxDB's message."""
        query = {"q": q, **params}
        if db:
            query["db"] = self.database
        try:
            if method == "POST":
                r = self._query_http.post("/query", data=query)
            else:
                r = self._query_http.get("/query", params=query)
        except httpx.TransportError as err:
            raise StoreUnreachableError(f"InfluxDB at {self.url} is unreachable: {err}") from err
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code >= 400 or "error" in body:
            raise StoreError(f"InfluxDB query failed ({r.status_code}): {body.get('error') or r.text[:300]}")
        results: list[dict[str, Any]] = body.get("results", [])
        if not results:
            return {}
        if "error" in results[0]:
            raise StoreError(f"InfluxDB query failed: {results[0]['error']}")
        return results[0]

    def _send(self, body: bytes) -> None:
        try:
            r = self._write_http.post(
                "/write",
                params={"db": self.database, "precision": "ns"},
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.TransportError as err:
            raise Transient(f"InfluxDB at {self.url} unreachable: {type(err).__name__}: {err}") from err
        if r.status_code in (200, 204):
            return
        text = r.text.strip()[:500]
        if r.status_code == 429 or r.status_code >= 500:
            raise Transient(f"InfluxDB write failed ({r.status_code}): {text}")
        if r.status_code == 404 and "database not found" in text and self._create_database:
            # Dropped or never created (the server was down at start): create it and try again.
            try:
                self._create_db()
            except (StoreError, httpx.HTTPError) as err:
                raise Transient(f"InfluxDB database {self.database!r} missing and not creatable: {err}") from err
            raise Transient(f"InfluxDB database {self.database!r} was missing; created it")
        m = _DROPPED.search(text)
        raise Permanent(f"InfluxDB refused the write ({r.status_code}): {text}", failed=int(m.group(1)) if m else None)
