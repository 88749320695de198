"""Per-stream ordering by sequence number: dedupe, hold after a gap, release in seq order, detect reboots.

One Sequencer per (sensor, kind). The normal path (the next expected seq) releases at once with no added
latency; only messages after a gap wait, until the gap fills or the lateness window passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

# in_order: released now (with any held successors); held: waiting for a gap; duplicate: seen before;
# late: fills a gap already given up (caller decides to apply or drop); untracked: older than the first
# message this stream saw, so it cannot be told from a duplicate; restart: the sensor rebooted (seq fell back
# while time moved forward): older held items were flushed and tracking restarted at this message.
MAX_COUNTED_GAP = 100_000  # seqs counted as missing for one gap, at most
Verdict = Literal["in_order", "held", "duplicate", "late", "untracked", "restart"]

MAX_GAP_RANGES = 32  # remembered given-up gaps per stream; older ones are forgotten (memory stays bounded)
# What a stream with nothing held points to, instead of a dict of its own (64 bytes or more each, and a dict
# once used keeps its table): offer() gives the stream a dict before holding anything, and a stream whose
# held messages are all released points back here. Never written to.
_NOTHING_HELD: dict[int, Any] = {}


@dataclass(slots=True)
class Held(Generic[T]):
    seq: int
    ts: float
    received_at: float
    item: T


class Sequencer(Generic[T]):
    """One stream's ordering state. Small, since there is one per (sensor, kind): the common stream, in order,
    holds a few numbers; a held-message dict and the given-up gaps exist only while there are some."""

    __slots__ = ("first_seq", "gaps", "held", "lateness_s", "missing", "newest_ts", "next_seq")

    def __init__(self, lateness_s: float) -> None:
        self.lateness_s = lateness_s
        self.next_seq: int | None = None  # None: nothing seen yet
        self.first_seq = 0
        self.newest_ts = float("-inf")
        self.held: dict[int, Held[T]] = _NOTHING_HELD
        self.gaps: tuple[tuple[int, int], ...] = ()  # given-up seq ranges [lo, hi), oldest first
        self.missing = 0  # seqs given up on, cumulative

    def offer(self, seq: int, ts: float, received_at: float, item: T, out: list[T]) -> Verdict:
        """Take one message; append whatever is released now to `out`, in seq order."""
        nxt = self.next_seq
        if nxt is None or seq == nxt:
            if nxt is None:
                self.first_seq = seq
            self.next_seq = seq + 1
            if ts > self.newest_ts:
                self.newest_ts = ts
            out.append(item)
            if self.held:
                self._drain(out)
                self._expire_event_time(received_at, out)
            return "in_order"
        if seq < nxt:
            if ts > self.newest_ts:
                # Seq fell back while event time moved on: a reboot. Flush the old epoch, start again here.
                self.flush(out)
                self.next_seq = seq + 1
                self.first_seq = seq
                self.newest_ts = ts
                self.gaps = ()
                out.append(item)
                return "restart"
            if self._take_gap(seq):
                return "late"
            return "untracked" if seq < self.first_seq else "duplicate"
        if seq in self.held:
            return "duplicate"
        if self.held is _NOTHING_HELD:
            self.held = {}
        self.held[seq] = Held(seq, ts, received_at, item)
        if ts > self.newest_ts:
            self.newest_ts = ts
        self._expire_event_time(received_at, out)
        return "held"

    def expire(self, now: float, out: list[T]) -> None:
        """Give up on gaps whose first held successor has waited more than lateness_s (processing time)."""
        while self.held:
            first = self.held[min(self.held)]
            if now - first.received_at <= self.lateness_s:
                return
            self._give_up_until(first.seq, out)

    def flush(self, out: list[T]) -> None:
        while self.held:
            self._give_up_until(min(self.held), out)

    def _expire_event_time(self, received_at: float, out: list[T]) -> None:
        while self.held:
            first = self.held[min(self.held)]
            if self.newest_ts - first.ts <= self.lateness_s and received_at - first.received_at <= self.lateness_s:
                return
            self._give_up_until(first.seq, out)

    def _give_up_until(self, seq: int, out: list[T]) -> None:
        nxt = self.next_seq
        assert nxt is not None and seq > nxt
        # A jump beyond what any sensor sends between two readings is a corrupt or reset counter, not lost
        # messages: counting it would put quadrillions in /healthz (found by scripts/fuzz.py).
        self.missing += min(seq - nxt, MAX_COUNTED_GAP)
        self.gaps = (*self.gaps, (nxt, seq))[-MAX_GAP_RANGES:]  # a give-up is rare: a new tuple is fine
        self.next_seq = seq
        self._drain(out)

    def _drain(self, out: list[T]) -> None:
        nxt = self.next_seq
        assert nxt is not None
        held = self.held
        while nxt in held:
            out.append(held.pop(nxt).item)
            nxt += 1
        self.next_seq = nxt
        if not held:
            self.held = _NOTHING_HELD

    def _take_gap(self, seq: int) -> bool:
        """If seq lies in a given-up gap, remove it from the gap (a second copy is then a duplicate)."""
        for i, (lo, hi) in enumerate(self.gaps):
            if lo <= seq < hi:
                parts = tuple((a, b) for a, b in ((lo, seq), (seq + 1, hi)) if a < b)
                self.gaps = (*self.gaps[:i], *parts, *self.gaps[i + 1 :])
                return True
        return False
