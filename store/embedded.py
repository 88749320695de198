"""The demo default: zone_state history with no server to set up.

- Memory: per zone, a ring of 10 s slots covering `keep_s` (6 h: 2,161 slots a zone), each holding the
  sums and counts of the states that fell in it, the worst level and the highest arrivals count. Charts read
  from here. The ring is a few numpy columns allocated whole at the zone's first state (69 bytes a slot,
  146 KB a zone at 6 h of 10 s slots): memory is the same after a minute as after a month, where one Python
  object per slot grew by about 1.1 MB a zone over the first six hours.
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
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

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


_I32 = np.iinfo(np.int32)
_NONE = int(_I32.min)  # no slot at this position; no arrivals count in this slot
_LEVEL_MAX = int(np.iinfo(np.int8).max)
_COUNT_MAX = int(np.iinfo(np.uint16).max)  # states of one zone in one slot (one a tick: 2 in 10 s)


class _Ring:
    """One zone's slots over the last `span` slots before the newest, as columns allocated once: slot k (its
    start is k × slot_s) lives at position k % length. A position still holding a slot that fell out of the
    window is reused when a newer slot lands on it, so nothing is ever appended or freed.

    69 bytes a slot: the slot number (int32, counted from the zone's first slot), the sums of the mean fields
    (float64, so the means are those of Python floats to the bit), how many states had each field (uint16:
    a slot full at 65,535 states takes no more, the minute rows still do), the worst level (int8), the
    highest arrivals count (int32)."""

    __slots__ = ("arrivals", "base", "counts", "length", "level", "newest", "slot", "span", "sums")

    def __init__(self, span: int) -> None:
        self.span = span
        self.length = span + 1
        self.slot = np.full(self.length, _NONE, dtype=np.int32)  # slot number - base held at each position
        self.sums = np.zeros((self.length, len(_MEANS)), dtype=np.float64)
        self.counts = np.zeros((self.length, len(_MEANS)), dtype=np.uint16)
        self.level = np.zeros(self.length, dtype=np.int8)
        self.arrivals = np.full(self.length, _NONE, dtype=np.int32)
        self.base = 0  # slot numbers are stored relative to the zone's first one: int32 lasts 680 years
        self.newest: int | None = None  # relative, like `slot`

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.slot, self.sums, self.counts, self.level, self.arrivals))

    def add(self, k: int, values: Sequence[float], level: int, arrivals: int | None) -> bool:
        """Fold one state into slot k (absolute); False if its slot is full. A slot older than the window is
        left to the minute rows."""
        if self.newest is None:
            self.base = k
        rel = k - self.base
        if rel > _I32.max:  # centuries after the first slot: the window starts over there
            self._clear(k)
            rel = 0
        elif rel <= _NONE:  # centuries before it: far older than the window
            return True
        if self.newest is None or rel > self.newest:
            self.newest = rel
        elif rel < self.newest - self.span:
            return True
        p = k % self.length
        if self.slot[p] != rel:  # first state of this slot: the position may hold an expired one
            self.slot[p] = rel
            self.sums[p] = 0.0
            self.counts[p] = 0
            self.level[p] = 0
            self.arrivals[p] = _NONE
        elif self.counts[p].max() >= _COUNT_MAX:
            return False
        vals = np.array(values, dtype=np.float64)
        known = ~np.isnan(vals)  # NaN: skipped (not known, or not finite)
        self.sums[p] += np.where(known, vals, 0.0)
        self.counts[p] += known
        if level > self.level[p]:
            self.level[p] = level
        if arrivals is not None and arrivals > self.arrivals[p]:  # _NONE is below every count
            self.arrivals[p] = arrivals
        return True

    def _clear(self, k: int) -> None:
        self.slot[:] = _NONE
        self.base = k
        self.newest = None

    def rows(self, slot_s: float, since: float, until: float) -> tuple[float | None, list[_Row]]:
        """(start of the oldest slot held, the held slots starting in [since, until) oldest first)."""
        if self.newest is None:
            return None, []
        held = np.flatnonzero(self.slot >= self.newest - self.span)  # _NONE is below every window
        if not len(held):
            return None, []
        order = held[np.argsort(self.slot[held])]
        starts = (self.slot[order].astype(np.int64) + self.base) * slot_s
        oldest = float(starts[0])
        pick = order[(starts >= since) & (starts < until)]
        if not len(pick):
            return oldest, []
        counts = self.counts[pick]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self.sums[pick] / counts
        out: list[_Row] = []
        for rel, cs, ms, level, arrivals in zip(
            self.slot[pick].tolist(),
            counts.tolist(),
            means.tolist(),
            self.level[pick].tolist(),
            self.arrivals[pick].tolist(),
            strict=True,
        ):
            out.append(
                (
                    (rel + self.base) * slot_s,
                    cs,
                    [m if c else None for m, c in zip(ms, cs, strict=True)],
                    level,
                    None if arrivals == _NONE else arrivals,
                )
            )
        return oldest, out


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
        self._span = math.floor(keep_s / slot_s)  # slots older than the newest one that memory keeps
        self._rings: dict[str, _Ring] = {}
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
                    if not 0 <= level <= _LEVEL_MAX:
                        raise ValueError(f"level {level} is not a warning level")
                    if not _NONE < arrivals <= _I32.max:
                        raise ValueError(f"arrivals_today {arrivals} is out of range (32-bit)")
                except (TypeError, ValueError, AttributeError, OverflowError) as err:
                    self.stats.points_invalid += 1
                    self.stats.last_error = f"invalid zone_state for zone {getattr(s, 'zone', '?')!r}: {err}"
                    continue
                bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
                for i in bad:
                    values[i] = math.nan  # skipped by _Acc.add
                self.stats.fields_skipped += sum(1 for i in bad if raw[i] is not None)
                kept = self._add_to_ring(s.zone, ts, values, level, arrivals)
                self._add_to_minute(s.zone, ts, values, level, arrivals)
                if self.path is None:
                    if kept:
                        self.stats.points_written += 1
                    else:  # memory is all there is, and this state's 10 s slot is full
                        self.stats.points_ignored += 1
                        self.stats.last_error = f"zone {s.zone!r}: {_COUNT_MAX} states in one slot; more ignored"

    def write_readings(self, readings: Sequence[Reading]) -> None:
        self.stats.points_ignored += len(readings)

    def history(self, zone: str, since: float, until: float, *, every_s: float = 60.0) -> list[dict[str, float]]:
        with self._lock:
            ring = self._rings.get(zone)
            oldest, mem_rows = ring.rows(self.slot_s, since, until) if ring is not None else (None, [])
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

    def _add_to_ring(self, zone: str, ts: float, values: Sequence[float], level: int, arrivals: int) -> bool:
        ring = self._rings.get(zone)
        if ring is None:
            ring = self._rings[zone] = _Ring(self._span)
        return ring.add(math.floor(ts / self.slot_s), values, level, arrivals)

    def memory_bytes(self) -> int:
        """Bytes the in-memory window holds (its arrays): fixed per zone from the zone's first state on."""
        with self._lock:
            return sum(r.nbytes for r in self._rings.values())

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
