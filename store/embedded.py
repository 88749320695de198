"""The demo default: zone_state history with no server to set up.

- Memory: per zone, a ring of 10 s slots covering `keep_s` (6 h: 2,160 slots a zone), each holding the
  means of the states that fell in it, the worst level and the highest arrivals count. Charts read from here.
- Disk (when `path` is given): one row per zone per minute in a SQLite file (WAL mode), written by a
  background thread in batched transactions, so history survives a restart. A state arriving late for a
  minute already written is merged into that row (weighted by the number of states), never duplicated.
- `history()` answers from memory where memory reaches and from SQLite before that.
- A file written before a column existed (expected_inflow_per_min and arrivals_today came later) is
  brought up to date on open by adding the column; its old rows have no value there and history leaves the
  field out of their buckets.

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
from store.base import HISTORY_MEAN_FIELDS, StoreStats

log = logging.getLogger(__name__)

_MEANS = HISTORY_MEAN_FIELDS  # everything but level and arrivals_today, which keep their maximum
_MINUTE = 60.0

# A slot or minute row as history() merges them: start, per-mean-field state counts, means, level, arrivals.
_Row = tuple[float, Sequence[int], Sequence[float | None], int, int | None]


class _Acc:
    """Sums and counts of the mean fields, the worst level and the highest arrivals count, over one slot."""

    __slots__ = ("arrivals", "counts", "level", "n", "start", "sums")

    def __init__(self, start: float) -> None:
        self.start = start
        self.n = 0
        self.sums = [0.0] * len(_MEANS)
        self.counts = [0] * len(_MEANS)
        self.level = 0
        self.arrivals: int | None = None

    def add(self, values: Sequence[float], level: int, arrivals: int) -> None:
        self.n += 1
        for i, v in enumerate(values):
            if not math.isnan(v):
                self.sums[i] += v
                self.counts[i] += 1
        self.level = max(self.level, level)
        self.arrivals = arrivals if self.arrivals is None else max(self.arrivals, arrivals)

    def means(self) -> list[float | None]:
        return [s / c if c else None for s, c in zip(self.sums, self.counts, strict=True)]


_COLS = ", ".join(_MEANS)
_MERGE = ", ".join(
    f"{c} = CASE WHEN excluded.{c} IS NULL THEN {c} WHEN {c} IS NULL THEN excluded.{c} "
    f"ELSE ({c} * n + excluded.{c} * excluded.n) / (n + excluded.n) END"
    for c in _MEANS
)
# Columns that may be missing from a file written by an older version, with their types.
_ADDED = {**{c: "REAL" for c in _MEANS}, "arrivals_today": "INTEGER"}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS zone_state_1m (
    zone TEXT NOT NULL, ts REAL NOT NULL, n INTEGER NOT NULL,
    {", ".join(f"{c} REAL" for c in _MEANS)},
    level INTEGER NOT NULL,
    arrivals_today INTEGER,
    PRIMARY KEY (zone, ts)
) WITHOUT ROWID
"""
# max() of SQLite returns NULL if either side is NULL: keep whichever is known.
_MAX_ARRIVALS = (
    "arrivals_today = max(coalesce(arrivals_today, excluded.arrivals_today), "
    "coalesce(excluded.arrivals_today, arrivals_today))"
)
_UPSERT = (
    f"INSERT INTO zone_state_1m (zone, ts, n, {_COLS}, level, arrivals_today) "
    f"VALUES (?, ?, ?, {', '.join('?' * len(_MEANS))}, ?, ?) "
    f"ON CONFLICT (zone, ts) DO UPDATE SET {_MERGE}, level = max(level, excluded.level), {_MAX_ARRIVALS}, "
    "n = n + excluded.n"
)


def _row(zone: str, acc: _Acc) -> tuple[object, ...]:
    """A SQLite row: zone, ts, n, the means (NULL when no finite value), level, arrivals."""
    return (zone, acc.start, acc.n, *acc.means(), acc.level, acc.arrivals)


def _migrate(db: sqlite3.Connection) -> None:
    """Add the columns a file from an older version lacks (one transaction, so a second process opening the
    same file at once waits rather than adding them twice)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(zone_state_1m)")}
        for col, kind in _ADDED.items():
            if col not in have:
                db.execute(f"ALTER TABLE zone_state_1m ADD COLUMN {col} {kind}")
                log.info("embedded store: added column %s to an older history file", col)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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
                _migrate(db)
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
                    raw = [getattr(s, f) for f in _MEANS]
                    # None is "not known" (no learned normal yet): left out of the mean, not counted as skipped.
                    values = [math.nan if v is None else float(v) for v in raw]
                    level = int(s.level)
                    arrivals = int(s.arrivals_today)
                    if not math.isfinite(ts):
                        raise ValueError(f"timestamp {ts!r} is not finite")
                except (TypeError, ValueError, AttributeError) as err:
                    self.stats.points_invalid += 1
                    self.stats.last_error = f"invalid zone_state for zone {getattr(s, 'zone', '?')!r}: {err}"
                    continue
                bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
                for i in bad:
                    values[i] = math.nan  # skipped by _Acc.add
                self.stats.fields_skipped += sum(1 for i in bad if raw[i] is not None)
                self._add_to_ring(s.zone, ts, values, level, arrivals)
                self._add_to_minute(s.zone, ts, values, level, arrivals)
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
            mem_rows: list[_Row] = [(a.start, list(a.counts), a.means(), a.level, a.arrivals) for a in mem]
        cutoff = until
        if oldest is not None:
            # SQLite's minute rows cover whole minutes: take them up to the first whole minute in memory.
            cutoff = oldest if self.path is None else math.ceil(oldest / _MINUTE) * _MINUTE
        rows = [r for r in mem_rows if r[0] >= cutoff]
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

    def _add_to_ring(self, zone: str, ts: float, values: Sequence[float], level: int, arrivals: int) -> None:
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
        acc.add(values, level, arrivals)

    def _add_to_minute(self, zone: str, ts: float, values: Sequence[float], level: int, arrivals: int) -> None:
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
            acc.add(values, level, arrivals)
            self._rows.put(_row(zone, acc))
            return
        acc.add(values, level, arrivals)

    # -- SQLite ------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _disk_rows(self, zone: str, since: float, until: float) -> Iterable[_Row]:
        db = self._connect()
        try:
            cur = db.execute(
                f"SELECT ts, n, {_COLS}, level, arrivals_today FROM zone_state_1m "
                "WHERE zone = ? AND ts >= ? AND ts < ? ORDER BY ts",
                (zone, math.floor(since / _MINUTE) * _MINUTE, until),
            )
            out: list[_Row] = []
            for ts, n, *rest in cur.fetchall():
                means, level, arrivals = rest[:-2], rest[-2], rest[-1]
                counts = [n if m is not None else 0 for m in means]
                out.append((float(ts), counts, means, int(level), None if arrivals is None else int(arrivals)))
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


def _bucket(rows: Iterable[_Row], every_s: float) -> list[dict[str, float]]:
    """Weighted means per `every_s` bucket (by how many states each row stands for), worst level, highest
    arrivals count (left out when no row of the bucket has one)."""
    buckets: dict[float, tuple[list[float], list[int], list[int], list[int | None]]] = {}
    for ts, counts, means, level, arrivals in rows:
        key = math.floor(ts / every_s) * every_s
        sums, ns, worst, most = buckets.setdefault(key, ([0.0] * len(_MEANS), [0] * len(_MEANS), [0], [None]))
        for i, (c, m) in enumerate(zip(counts, means, strict=True)):
            if m is not None and c:
                sums[i] += m * c
                ns[i] += c
        worst[0] = max(worst[0], level)
        if arrivals is not None:
            most[0] = arrivals if most[0] is None else max(most[0], arrivals)
    out: list[dict[str, float]] = []
    for key in sorted(buckets):
        sums, ns, worst, most = buckets[key]
        row = {"ts": key}
        row.update({f: s / n for f, s, n in zip(_MEANS, sums, ns, strict=True) if n})
        row["level"] = float(worst[0])
        if most[0] is not None:
            row["arrivals_today"] = float(most[0])
        out.append(row)
    return out
