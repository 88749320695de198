"""The demo default: zone_state history with no server to set up.

- Memory: per zone, a ring of 10 s slots covering `keep_s` (6 h: 2,160 slots a zone), each holding the
  means of the states that fell in it and the worst level. Charts read from here.
- Disk (when `path` is given): one row per zone per minute in a SQLite file (WAL mode), written by a
  background thread in batched transactions, so history survives a restart. A state arriving late for a
  minute already written is merged into that row (weighted by the number of states), never duplicated.
- `history()` answers from memory where memory reaches and from SQLite before that.

Readings are not kept (they are counted as `points_ignored`): the embedded store is for charts, and InfluxDB
is the place for raw sensor data. Time is the states' event time; nothing here reads the wall clock.
"""

from __future__ import annotations

import logging
import math
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from domain.values import Reading, ZoneState
from store.base import HISTORY_FIELDS, StoreStats

log = logging.getLogger(__name__)

_MEANS = HISTORY_FIELDS[:-1]  # everything but level, which keeps its maximum
_MINUTE = 60.0


class _Acc:
    """Sums and counts of the mean fields, the worst level, over one slot."""

    __slots__ = ("counts", "level", "n", "start", "sums")

    def __init__(self, start: float) -> None:
        self.start = start
        self.n = 0
        self.sums = [0.0] * len(_MEANS)
        self.counts = [0] * len(_MEANS)
        self.level = 0

    def add(self, values: Sequence[float], level: int) -> None:
        self.n += 1
        for i, v in enumerate(values):
            if not math.isnan(v):
                self.sums[i] += v
                self.counts[i] += 1
        self.level = max(self.level, level)

    def means(self) -> list[float | None]:
        return [s / c if c else None for s, c in zip(self.sums, self.counts, strict=True)]


_COLS = ", ".join(_MEANS)
_MERGE = ", ".join(
    f"{c} = CASE WHEN excluded.{c} IS NULL THEN {c} WHEN {c} IS NULL THEN excluded.{c} "
    f"ELSE ({c} * n + excluded.{c} * excluded.n) / (n + excluded.n) END"
    for c in _MEANS
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS zone_state_1m (
    zone TEXT NOT NULL, ts REAL NOT NULL, n INTEGER NOT NULL,
    {", ".join(f"{c} REAL" for c in _MEANS)},
    level INTEGER NOT NULL,
    PRIMARY KEY (zone, ts)
) WITHOUT ROWID
"""
_UPSERT = (
    f"INSERT INTO zone_state_1m (zone, ts, n, {_COLS}, level) "
    f"VALUES (?, ?, ?, {', '.join('?' * len(_MEANS))}, ?) "
    f"ON CONFLICT (zone, ts) DO UPDATE SET {_MERGE}, level = max(level, excluded.level), n = n + excluded.n"
)


def _row(zone: str, acc: _Acc) -> tuple[object, ...]:
    """A SQLite row: zone, ts, n, the means (NULL when no finite value), level."""
    return (zone, acc.start, acc.n, *acc.means(), acc.level)


class EmbeddedStore:
    def __init__(
        self,
        path: Path | None,
        *,
        keep_s: float = 6 * 3600,
        slot_s: float = 10.0,
        flush_interval_s: float = 1.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        self.path = path
        self.keep_s = keep_s
        self.slot_s = slot_s
        self.close_timeout_s = close_timeout_s
        self.stats = StoreStats()
        self._lock = threading.Lock()
        self._ring_len = math.ceil(keep_s / slot_s) + 1
        self._rings: dict[str, deque[_Acc]] = {}
        self._minutes: dict[str, _Acc] = {}
        self._closed = False
        self._rows: queue.SimpleQueue[tuple[object, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:  # fail here, loudly, if the file cannot be opened
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
            self._thread = threading.Thread(
                target=self._run, args=(flush_interval_s,), name="embedded-store-writer", daemon=True
            )
            self._thread.start()

    # -- Store -------------------------------------------------------------------------------------------

    def write_states(self, states: Sequence[ZoneState]) -> None:
        with self._lock:
            if self._closed:
                self.stats.points_failed += len(states)
                self.stats.last_error = f"{len(states)} points handed to the store after close()"
                return
            for s in states:
                try:
                    ts = float(s.ts)
                    values = [float(getattr(s, f)) for f in _MEANS]
                    level = int(s.level)
                    if not math.isfinite(ts):
                        raise ValueError(f"timestamp {ts!r} is not finite")
                except (TypeError, ValueError, AttributeError) as err:
                    self.stats.points_invalid += 1
                    self.stats.last_error = f"invalid zone_state for zone {getattr(s, 'zone', '?')!r}: {err}"
                    continue
                bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
                for i in bad:
                    values[i] = math.nan  # skipped by _Acc.add
                self.stats.fields_skipped += len(bad)
                self._add_to_ring(s.zone, ts, values, level)
                self._add_to_minute(s.zone, ts, values, level)
                if self.path is None:
                    self.stats.points_written += 1

    def write_readings(self, readings: Sequence[Reading]) -> None:
        self.stats.points_ignored += len(readings)

    def history(
        self, zone: str, since: float, until: float, *, every_s: float = 60.0
    ) -> list[dict[str, float]]:
        with self._lock:
            ring = self._rings.get(zone)
            oldest = ring[0].start if ring else None
            mem = [a for a in ring or () if since <= a.start < until]
            mem_rows = [(a.start, list(a.counts), a.means(), a.level) for a in mem]
        cutoff = until
        if oldest is not None:
            # SQLite's minute rows cover whole minutes: take them up to the first whole minute in memory.
            cutoff = oldest if self.path is None else math.ceil(oldest / _MINUTE) * _MINUTE
        rows: list[tuple[float, Sequence[int], Sequence[float | None], int]] = [
            r for r in mem_rows if r[0] >= cutoff
        ]
        if self.path is not None and since < cutoff:
            rows.extend(self._disk_rows(zone, since, min(until, cutoff)))
        return _bucket(rows, every_s)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.path is not None:
                for zone, acc in self._minutes.items():
                    self._rows.put(_row(zone, acc))
            self._minutes.clear()
            self._rows.put(None)
        if self._thread is not None:
            self._thread.join(self.close_timeout_s)
            if self._thread.is_alive():
                self.stats.last_error = f"SQLite writer did not finish within {self.close_timeout_s}s"
                log.error(self.stats.last_error)

    # -- memory ------------------------------------------------------------------------------------------

    def _add_to_ring(self, zone: str, ts: float, values: Sequence[float], level: int) -> None:
        start = math.floor(ts / self.slot_s) * self.slot_s
        ring = self._rings.get(zone)
        if ring is None:
            ring = self._rings[zone] = deque(maxlen=self._ring_len)
        if not ring or start > ring[-1].start:
            acc = _Acc(start)
            ring.append(acc)
            while ring[0].start < start - self.keep_s:
                ring.popleft()
        elif start < ring[0].start:
            return  # older than memory reaches: only the minute rows keep it
        else:
            i = len(ring) - 1  # late data is rare and near the end: search backwards
            while ring[i].start > start:
                i -= 1
            if ring[i].start == start:
                acc = ring[i]
            else:
                acc = _Acc(start)
                if len(ring) == ring.maxlen:
                    ring.popleft()
                    i -= 1
                ring.insert(i + 1, acc)
        acc.add(values, level)

    def _add_to_minute(self, zone: str, ts: float, values: Sequence[float], level: int) -> None:
        if self.path is None:
            return
        start = math.floor(ts / _MINUTE) * _MINUTE
        acc = self._minutes.get(zone)
        if acc is None or start > acc.start:
            if acc is not None:
                self._rows.put(_row(zone, acc))  # the minute is over: persist it
            acc = self._minutes[zone] = _Acc(start)
        elif start < acc.start:
            acc = _Acc(start)  # late for a minute already sent: the upsert merges it
            acc.add(values, level)
            self._rows.put(_row(zone, acc))
            return
        acc.add(values, level)

    # -- SQLite ------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _disk_rows(
        self, zone: str, since: float, until: float
    ) -> Iterable[tuple[float, Sequence[int], Sequence[float | None], int]]:
        db = self._connect()
        try:
            cur = db.execute(
                f"SELECT ts, n, {_COLS}, level FROM zone_state_1m WHERE zone = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts",
                (zone, math.floor(since / _MINUTE) * _MINUTE, until),
            )
            out = []
            for ts, n, *rest in cur.fetchall():
                means, level = rest[:-1], rest[-1]
                out.append((float(ts), [n if m is not None else 0 for m in means], means, int(level)))
            return out
        finally:
            db.close()

    def _run(self, flush_interval_s: float) -> None:
        db = self._connect()
        try:
            done = False
            while not done:
                batch: list[tuple[object, ...]] = []
                try:
                    item = self._rows.get(timeout=flush_interval_s)
                except queue.Empty:
                    continue
                while True:  # take everything waiting: one transaction per batch
                    if item is None:
                        done = True
                        break
                    batch.append(item)
                    try:
                        item = self._rows.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._commit(db, batch)
        finally:
            db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[tuple[object, ...]]) -> None:
        states = sum(int(r[2]) for r in batch)  # type: ignore[call-overload]
        try:
            db.execute("BEGIN")
            db.executemany(_UPSERT, batch)
            db.execute("COMMIT")
        except sqlite3.Error as err:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self.stats.points_failed += states
            self.stats.last_error = f"SQLite write failed: {err}"
            log.error("embedded store: %s", self.stats.last_error)
        else:
            self.stats.points_written += states
        self.stats.batches += 1


def _bucket(
    rows: Iterable[tuple[float, Sequence[int], Sequence[float | None], int]], every_s: float
) -> list[dict[str, float]]:
    """Weighted means per `every_s` bucket (by how many states each row stands for), worst level."""
    buckets: dict[float, tuple[list[float], list[int], list[int]]] = {}
    for ts, counts, means, level in rows:
        key = math.floor(ts / every_s) * every_s
        sums, ns, worst = buckets.setdefault(key, ([0.0] * len(_MEANS), [0] * len(_MEANS), [0]))
        for i, (c, m) in enumerate(zip(counts, means, strict=True)):
            if m is not None and c:
                sums[i] += m * c
                ns[i] += c
        worst[0] = max(worst[0], level)
    out: list[dict[str, float]] = []
    for key in sorted(buckets):
        sums, ns, worst = buckets[key]
        row = {"ts": key}
        row.update({f: s / n for f, s, n in zip(_MEANS, sums, ns, strict=True) if n})
        row["level"] = float(worst[0])
        out.append(row)
    return out
