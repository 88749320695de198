"""Per-stream ordering by sequence number: dedupe, hold after a gap, release in seq order, detect reboots.

One stream per (sensor, kind). The normal path (the next expected seq) releases at once with no added
latency; only messages after a gap wait, until the gap fills or the lateness window passes.

The streams' state is kept in columns (`Sequences`), one row per stream, numbered by the caller (ingest gives
each sensor's own stream its site index, allocated when the site is loaded): a few numbers a stream, not an
object with its attributes. What only some streams have at a time (held messages, given-up gaps) is kept in
dicts by stream number while they have it.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

# in_order: released now (with any held successors); held: waiting for a gap; duplicate: seen before;
# late: fills a gap already given up (caller decides to apply or drop); untracked: older than the first
# message this stream saw, so it cannot be told from a duplicate; restart: the sensor rebooted (seq fell back
# while time moved forward): older held items were flushed and tracking restarted at this message.
Verdict = Literal["in_order", "held", "duplicate", "late", "untracked", "restart"]

# A gap of more than this many seqs, once given up, is a device whose sequence was reset (a reboot that did not
# start again from 0, a reinitialised or corrupt counter), not that many lost messages: no sensor sends 100,000
# readings between two that arrive (a day at one a second). It counts as a restart (`resets`), nothing as
# missing (counting it put quadrillions in /healthz: found by scripts/fuzz.py), and tracking goes on from
# there as after a reboot. Decided when the gap is given up, not when the far seq arrives: until then the old
# sequence may still go on (a second device publishing on the sensor's topic with its own seqs, as the sensor
# abuse fault does), and its readings are taken in order meanwhile.
MAX_COUNTED_GAP = 100_000

MAX_GAP_RANGES = 32  # remembered given-up gaps per stream; older ones are forgotten (memory stays bounded)
_UNSEEN = -1  # next_seq of a stream that has seen nothing yet (seqs are >= 0: the decoder checks)


@dataclass(slots=True)
class Held(Generic[T]):
    seq: int
    ts: float
    received_at: float
    item: T


class Sequences(Generic[T]):
    """The ordering state of many streams: next expected seq, first seq seen and newest event time in typed
    columns (24 bytes a stream); held messages and given-up gaps by stream, only while a stream has some.
    `missing` counts the seqs given up on and `resets` the gaps too wide to be lost messages (MAX_COUNTED_GAP),
    all streams together."""

    __slots__ = ("_first", "_gaps", "_newest", "_next", "held", "lateness_s", "missing", "resets")

    def __init__(self, lateness_s: float, streams: int = 0) -> None:
        self.lateness_s = lateness_s
        self._next = array("q", [_UNSEEN]) * streams
        self._first = array("q", [0]) * streams
        self._newest = array("d", [-math.inf]) * streams
        self.held: dict[int, dict[int, Held[T]]] = {}  # stream -> seq -> message waiting for a gap
        self._gaps: dict[int, tuple[tuple[int, int], ...]] = {}  # stream -> given-up seq ranges [lo, hi)
        self.missing = 0  # seqs given up on, cumulative
        self.resets = 0  # sequence resets found by a gap too wide (MAX_COUNTED_GAP), cumulative

    def __len__(self) -> int:
        return len(self._next)

    def add(self) -> int:
        """One more stream; its number."""
        self._next.append(_UNSEEN)
        self._first.append(0)
        self._newest.append(-math.inf)
        return len(self._next) - 1

    def held_count(self, k: int) -> int:
        held = self.held.get(k)
        return len(held) if held else 0

    def offer(self, k: int, seq: int, ts: float, received_at: float, item: T, out: list[T]) -> Verdict:
        """Take one message of stream k; append whatever is released now to `out`, in seq order."""
        nxt = self._next[k]
        if seq == nxt or nxt == _UNSEEN:
            if nxt == _UNSEEN:
                self._first[k] = seq
            self._next[k] = seq + 1
            if ts > self._newest[k]:
                self._newest[k] = ts
            out.append(item)
            if self.held and k in self.held:
                self._drain(k, out)
                self._expire_event_time(k, received_at, out)
            return "in_order"
        if seq < nxt:
            if ts > self._newest[k]:
                # Seq fell back while event time moved on: a reboot. Flush the old epoch, start again here.
                self._restart(k, seq, ts, item, out)
                return "restart"
            if self._take_gap(k, seq):
                return "late"
            return "untracked" if seq < self._first[k] else "duplicate"
        held = self.held.get(k)
        if held is None:
            held = self.held[k] = {}
        elif seq in held:
            return "duplicate"
        held[seq] = Held(seq, ts, received_at, item)
        if ts > self._newest[k]:
            self._newest[k] = ts
        self._expire_event_time(k, received_at, out)
        return "held"

    def drop(self, k: int, seq: int) -> None:
        """Take a held message out of the hold (the caller rejected it after all). It may be gone already: the
        same offer can give up the gap before it and release it, and the caller then drops it from `out`."""
        held = self.held.get(k)
        if held is not None and held.pop(seq, None) is not None and not held:
            del self.held[k]

    def expire(self, k: int, now: float, out: list[T]) -> None:
        """Give up on gaps whose first held successor has waited more than lateness_s (processing time)."""
        while (held := self.held.get(k)) is not None:
            first = held[min(held)]
            if now - first.received_at <= self.lateness_s:
                return
            self._give_up_until(k, first.seq, out)

    def flush(self, k: int, out: list[T]) -> None:
        while (held := self.held.get(k)) is not None:
            self._give_up_until(k, min(held), out)

    def _restart(self, k: int, seq: int, ts: float, item: T, out: list[T]) -> None:
        self.flush(k, out)
        self._next[k] = seq + 1
        self._first[k] = seq
        self._newest[k] = ts
        self._gaps.pop(k, None)
        out.append(item)

    def _expire_event_time(self, k: int, received_at: float, out: list[T]) -> None:
        while (held := self.held.get(k)) is not None:
            first = held[min(held)]
            if self._newest[k] - first.ts <= self.lateness_s and received_at - first.received_at <= self.lateness_s:
                return
            self._give_up_until(k, first.seq, out)

    def _give_up_until(self, k: int, seq: int, out: list[T]) -> None:
        nxt = self._next[k]
        assert nxt != _UNSEEN and seq > nxt
        if seq - nxt > MAX_COUNTED_GAP:
            # A reset sequence, not lost messages: a new epoch from seq, as after a reboot (no gap to fill).
            self.resets += 1
            self._first[k] = seq
            self._gaps.pop(k, None)
        else:
            self.missing += seq - nxt
            self._gaps[k] = (*self._gaps.get(k, ()), (nxt, seq))[-MAX_GAP_RANGES:]  # rare: a new tuple is fine
        self._next[k] = seq
        self._drain(k, out)

    def _drain(self, k: int, out: list[T]) -> None:
        nxt = self._next[k]
        held = self.held[k]
        while nxt in held:
            out.append(held.pop(nxt).item)
            nxt += 1
        self._next[k] = nxt
        if not held:
            del self.held[k]

    def _take_gap(self, k: int, seq: int) -> bool:
        """If seq lies in a given-up gap, remove it from the gap (a second copy is then a duplicate)."""
        gaps = self._gaps.get(k, ())
        for i, (lo, hi) in enumerate(gaps):
            if lo <= seq < hi:
                parts = tuple((a, b) for a, b in ((lo, seq), (seq + 1, hi)) if a < b)
                rest = (*gaps[:i], *parts, *gaps[i + 1 :])
                if rest:
                    self._gaps[k] = rest
                else:
                    del self._gaps[k]
                return True
        return False
