"""A bounded disk spool of line-protocol batches for the InfluxDB stores: append-only segment files, read back
oldest first, the oldest segments deleted (and counted) when the byte bound is reached.

Layout in `directory`: `<seq>.seg` segment files (seq: 12 digits, increasing), a `cursor` file saying how far
the oldest segment has been replayed, and a `lock` file held (flock) while a spool is open, so two processes
cannot share one directory. A segment is a run of records; a record is one batch:

    magic "CFR1" | payload length u32 | crc32 u32 | line count u32 | min ts i64 | max ts i64 | payload
    (little-endian; the crc covers count, min, max and payload; payload = lines joined by "\\n"; ts in ns)

Crash safety: a record goes out in one write() of an O_APPEND file, so a SIGKILL leaves either the whole record
in the kernel's page cache or (rarely) a torn tail. Opening the spool checks every record of the newest
segment (the only one a crash can tear: older ones were fsynced when they were closed) and cuts a torn tail
off, counting it in `spool_torn`; any record found corrupt later, when it is read back, is counted there too
and the rest of its segment skipped (a length that cannot be trusted cannot lead to the next record). Data is
fsynced at most once a second and when a segment is closed, so a power cut (not a SIGKILL) can lose up to the
last second. The cursor is rewritten (atomically, by rename) after each replayed record: a crash between a
write to the server and the cursor update replays that one record again, which InfluxDB absorbs (a point with
the same measurement, tags and timestamp overwrites itself).

All methods are called from one thread (the store's writer); the counters live in the store's `StoreStats`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from store.base import StoreConfigError, StoreStats

log = logging.getLogger(__name__)

MAGIC = b"CFR1"
_HEADER = struct.Struct("<4sIIIqq")
_META = struct.Struct("<Iqq")  # the part of the header the crc covers
HEADER_BYTES = _HEADER.size
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_NS = 1_000_000_000


@dataclass
class Segment:
    seq: int
    path: Path
    size: int  # bytes on disk
    lines: int  # lines not yet replayed
    records: int  # records not yet replayed
    min_ts: int  # ns; the oldest event time still waiting in it (approximate once replay has started)
    max_ts: int


@dataclass(frozen=True)
class Record:
    lines: list[str]
    offset: int
    end: int  # offset of the next record
    min_ts: int
    max_ts: int


@dataclass(frozen=True)
class Dropped:
    """What one call to append() deleted to stay within the bound."""

    lines: int
    min_ts: int
    max_ts: int


def line_ts(line: str) -> int | None:
    """The timestamp (ns) that ends a line-protocol line, or None if it has none."""
    _, _, tail = line.rpartition(" ")
    try:
        return int(tail)
    except ValueError:
        return None


def encode_record(lines: Sequence[str]) -> bytes:
    stamps = [t for t in map(line_ts, lines) if t is not None]
    lo, hi = (min(stamps), max(stamps)) if stamps else (0, 0)
    payload = "\n".join(lines).encode()
    meta = _META.pack(len(lines), lo, hi)
    crc = zlib.crc32(meta + payload)
    return _HEADER.pack(MAGIC, len(payload), crc, len(lines), lo, hi) + payload


class Spool:
    def __init__(
        self,
        directory: Path,
        stats: StoreStats,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int | None = None,
        fsync_interval_s: float = 1.0,
    ) -> None:
        # 1/16 of the bound per segment (at most 32 MB): dropping the oldest segment frees a sixteenth.
        segment_bytes = segment_bytes or min(32 * 1024 * 1024, max(4096, max_bytes // 16))
        if max_bytes < 2 * segment_bytes:
            raise StoreConfigError(
                f"spool max_bytes ({max_bytes}) must be at least twice segment_bytes ({segment_bytes})"
            )
        self.directory = Path(directory)
        self.stats = stats
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreConfigError(
                f"cannot use {self.directory} for the InfluxDB spool ({err}); make it writable or "
                "point the data directory elsewhere"
            ) from err
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(self._lock_fd)
            raise StoreConfigError(
                f"the InfluxDB spool {self.directory} is in use by another process; give each service "
                "its own data directory"
            ) from err
        self._segs: deque[Segment] = deque()
        self._read_off = 0  # offset of the next record to replay in the oldest segment
        self._read_fd: int | None = None
        self._read_seq = -1
        self._write_fd: int | None = None  # the newest segment, while it takes appends
        self._last_fsync = time.monotonic()
        self._next_seq = 0
        self._closed = False
        self._open_existing()

    # -- state --------------------------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return not self._segs

    @property
    def pending_lines(self) -> int:
        return sum(s.lines for s in self._segs)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._segs)

    def _update_stats(self) -> None:
        self.stats.spool_pending = self.pending_lines
        self.stats.spool_bytes = self.bytes
        self.stats.spool_oldest_ts = min((s.min_ts for s in self._segs), default=0) / _NS

    # -- writing ------------------------------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> Dropped | None:
        """Append one batch as a record; what was deleted to make room (oldest segments first), if anything.

        A batch bigger than the whole bound is itself dropped (and counted). Raises OSError if the disk
        refuses the write; the segment is then cut back, so no torn record is left behind.
        """
        if not lines:
            return None
        rec = encode_record(lines)
        _, _, _, count, lo, hi = _HEADER.unpack_from(rec)
        if len(rec) > self.max_bytes:
            self._count_drop(count, lo, hi)
            return Dropped(count, lo, hi)
        dropped = self._make_room(len(rec))
        seg = self._writable(len(rec))
        assert self._write_fd is not None
        try:
            view = memoryview(rec)
            while view:
                n = os.write(self._write_fd, view)
                view = view[n:]
        except OSError:
            os.ftruncate(self._write_fd, seg.size)
            raise
        fresh = seg.records == 0
        seg.size += len(rec)
        seg.lines += count
        seg.records += 1
        seg.min_ts = lo if fresh else min(seg.min_ts, lo)
        seg.max_ts = hi if fresh else max(seg.max_ts, hi)
        self.stats.spooled += count
        if time.monotonic() - self._last_fsync >= self.fsync_interval_s:
            os.fsync(self._write_fd)
            self._last_fsync = time.monotonic()
        self._update_stats()
        return dropped

    def _writable(self, size: int) -> Segment:
        """The segment to append `size` bytes to: the newest, unless it is full or closed."""
        if self._write_fd is not None and self._segs:
            seg = self._segs[-1]
            if seg.size + size <= self.segment_bytes or seg.size == 0:
                return seg
            self._close_writer()
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / f"{seq:012d}.seg"
        self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        seg = Segment(seq, path, 0, 0, 0, 0, 0)
        self._segs.append(seg)
        return seg

    def _close_writer(self) -> None:
        if self._write_fd is not None:
            os.fsync(self._write_fd)
            os.close(self._write_fd)
            self._write_fd = None
            self._last_fsync = time.monotonic()

    def _make_room(self, size: int) -> Dropped | None:
        lines, lo, hi = 0, 0, 0
        while self._segs and self.bytes + size > self.max_bytes:
            seg = self._segs[0]
            if len(self._segs) == 1:
                self._close_writer()  # the only segment is the one being appended to
            s_lo, s_hi = self._range_from(seg, self._read_off)  # the head's unreplayed part
            self._delete_head()
            if seg.lines:
                lo = s_lo if not lines else min(lo, s_lo)
                hi = s_hi if not lines else max(hi, s_hi)
                lines += seg.lines
                self._count_drop(seg.lines, s_lo, s_hi)
        return Dropped(lines, lo, hi) if lines else None

    def _range_from(self, seg: Segment, offset: int) -> tuple[int, int]:
        """Exact event-time range of the records of `seg` from `offset` on, from their headers."""
        lo, hi, first = seg.min_ts, seg.max_ts, True
        try:
            with open(seg.path, "rb") as f:
                while offset + HEADER_BYTES <= seg.size:
                    f.seek(offset)
                    head = f.read(HEADER_BYTES)
                    magic, length, _, _, r_lo, r_hi = _HEADER.unpack(head)
                    if magic != MAGIC:
                        break
                    lo, hi = (r_lo, r_hi) if first else (min(lo, r_lo), max(hi, r_hi))
                    first = False
                    offset += HEADER_BYTES + length
        except (OSError, struct.error):
            pass  # the segment's own range is the fallback
        return lo, hi

    def _count_drop(self, lines: int, lo: int, hi: int) -> None:
        st = self.stats
        if lines <= 0:
            return
        first = st.spool_dropped == 0
        st.spool_dropped += lines
        st.spool_dropped_from_ts = lo / _NS if first else min(st.spool_dropped_from_ts, lo / _NS)
        st.spool_dropped_until_ts = hi / _NS if first else max(st.spool_dropped_until_ts, hi / _NS)

    # -- reading back ---------------------------------------------------------------------------------------

    def peek(self) -> Record | None:
        """The oldest record not yet replayed (None when the spool is empty). A corrupt one is counted in
        `spool_torn` and the rest of its segment skipped."""
        while self._segs:
            seg = self._segs[0]
            if self._read_off >= seg.size:  # e.g. left empty by a failed append
                self._delete_head()
                continue
            rec = self._read(seg, self._read_off)
            if rec is not None:
                return rec
            self.stats.spool_torn += 1
            log.error(
                "InfluxDB spool: corrupt record in %s at byte %d; skipping the rest of that segment (%d lines)",
                seg.path,
                self._read_off,
                seg.lines,
            )
            self._delete_head()
        return None

    def consume(self, rec: Record) -> None:
        """`rec` (the last peek()) has been written or refused for good: move past it."""
        seg = self._segs[0]
        self._read_off = rec.end
        seg.lines -= len(rec.lines)
        seg.records -= 1
        if self._read_off >= seg.size:
            self._delete_head()
        else:
            nxt = self._header(seg, self._read_off)
            if nxt is not None:
                seg.min_ts = nxt[2]
            self._save_cursor()
        self._update_stats()

    def _read(self, seg: Segment, offset: int) -> Record | None:
        if self._read_seq != seg.seq or self._read_fd is None:
            if self._read_fd is not None:
                os.close(self._read_fd)
            self._read_fd = os.open(seg.path, os.O_RDONLY)
            self._read_seq = seg.seq
        head = os.pread(self._read_fd, HEADER_BYTES, offset)
        if len(head) < HEADER_BYTES:
            return None
        magic, length, crc, count, lo, hi = _HEADER.unpack(head)
        if magic != MAGIC:
            return None
        payload = os.pread(self._read_fd, length, offset + HEADER_BYTES)
        if len(payload) < length or zlib.crc32(_META.pack(count, lo, hi) + payload) != crc:
            return None
        lines = payload.decode().split("\n") if payload else []
        if len(lines) != count:
            return None
        return Record(lines, offset, offset + HEADER_BYTES + length, lo, hi)

    def _header(self, seg: Segment, offset: int) -> tuple[int, int, int, int] | None:
        """(length, count, min ts, max ts) of the record at `offset`, unchecked beyond its magic."""
        if self._read_seq != seg.seq or self._read_fd is None:
            return None
        head = os.pread(self._read_fd, HEADER_BYTES, offset)
        if len(head) < HEADER_BYTES:
            return None
        magic, length, _, count, lo, hi = _HEADER.unpack(head)
        return (length, count, lo, hi) if magic == MAGIC else None

    def _delete_head(self) -> None:
        seg = self._segs.popleft()
        if self._read_seq == seg.seq and self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
            self._read_seq = -1
        if not self._segs:
            self._close_writer()
        seg.path.unlink(missing_ok=True)
        self._read_off = 0
        self._save_cursor()
        self._update_stats()

    def _save_cursor(self) -> None:
        seq = self._segs[0].seq if self._segs else self._next_seq
        tmp = self.directory / "cursor.tmp"
        tmp.write_text(json.dumps({"segment": seq, "offset": self._read_off}))
        os.replace(tmp, self.directory / "cursor")

    # -- opening what a previous run left -----------------------------------------------------------------

    def _open_existing(self) -> None:
        paths = sorted(p for p in self.directory.glob("*.seg") if p.stem.isdigit())
        cursor_seq, cursor_off = -1, 0
        try:
            c = json.loads((self.directory / "cursor").read_text())
            cursor_seq, cursor_off = int(c["segment"]), int(c["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no cursor: nothing was replayed yet
        for i, path in enumerate(paths):
            seq = int(path.stem)
            self._next_seq = max(self._next_seq, seq + 1)
            if seq < cursor_seq:
                path.unlink(missing_ok=True)  # replayed in full; the crash came before its deletion
                continue
            start = cursor_off if seq == cursor_seq else 0
            seg = self._scan(seq, path, start, verify=i == len(paths) - 1)
            if seg is None:
                continue
            if not self._segs:
                self._read_off = start
            self._segs.append(seg)
        self._next_seq = max(self._next_seq, cursor_seq + 1 if cursor_seq >= 0 else 0)
        self._update_stats()
        if self._segs:
            log.warning(
                "InfluxDB spool %s holds %d points (%d bytes) from a previous run; they are replayed first",
                self.directory,
                self.pending_lines,
                self.bytes,
            )

    def _scan(self, seq: int, path: Path, start: int, *, verify: bool) -> Segment | None:
        """The segment's index from its headers (its records checked in full when `verify`); a torn tail
        is cut off and counted."""
        seg = Segment(seq, path, 0, 0, 0, 0, 0)
        offset, good_end = 0, 0
        with open(path, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            while offset < size:
                f.seek(offset)
                head = f.read(HEADER_BYTES)
                ok = len(head) == HEADER_BYTES
                if ok:
                    magic, length, crc, count, lo, hi = _HEADER.unpack(head)
                    ok = magic == MAGIC and offset + HEADER_BYTES + length <= size
                if ok and verify:
                    payload = f.read(length)
                    ok = zlib.crc32(_META.pack(count, lo, hi) + payload) == crc
                if not ok:
                    self.stats.spool_torn += 1
                    log.warning(
                        "InfluxDB spool: %s ends in a torn record at byte %d of %d (a crash mid-write); "
                        "cut off, the records before it are kept",
                        path,
                        offset,
                        size,
                    )
                    f.truncate(offset)
                    break
                if offset >= start:
                    seg.min_ts = lo if not seg.records else min(seg.min_ts, lo)
                    seg.max_ts = hi if not seg.records else max(seg.max_ts, hi)
                    seg.lines += count
                    seg.records += 1
                offset += HEADER_BYTES + length
                good_end = offset
        seg.size = good_end
        if not seg.records:
            path.unlink(missing_ok=True)
            return None
        return seg

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_writer()
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
