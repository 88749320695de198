"""The resume window the hub and the push process share (dashboard/feed.py ResumeWindow)."""

from __future__ import annotations

from dashboard.feed import Message, ResumeWindow


def test_the_resume_window_replays_only_a_complete_run_that_fits_the_queue() -> None:
    window = ResumeWindow(4, max_bytes=1_000)
    for seq in range(1, 7):
        window.add(Message(seq, "delta", text=f"d{seq}"))
    assert [m.seq for m in window] == [3, 4, 5, 6] and window.bytes == 8
    assert [m.seq for m in window.missed_since(4, 6, limit=64) or []] == [5, 6]
    assert window.missed_since(6, 6, limit=64) == []  # up to date: nothing to replay
    assert window.missed_since(1, 6, limit=64) is None  # 2 was forgotten
    assert window.missed_since(3, 6, limit=2) is None  # 3 deltas do not fit a queue of 2
    assert window.missed_since(7, 6, limit=64) is None and window.missed_since(-1, 6, limit=64) is None
    window.clear()
    assert len(window) == 0 and window.bytes == 0 and window.missed_since(5, 6, limit=64) is None


def test_the_newest_delta_stays_whatever_the_byte_bound() -> None:
    small = ResumeWindow(4, max_bytes=5)
    for seq in range(1, 4):
        small.add(Message(seq, "delta", text="abc"))
    assert [m.seq for m in small] == [3] and small.bytes == 3
