"""A small progress bar for stderr (no dependency): rows done, percentage, rows/s and ETA.

It redraws at most once per `every_s` of its clock (injected, so tests drive it); on a terminal it redraws in
place, elsewhere (a log, a captured stream) it writes one line per update.

>>> import io
>>> t = iter([0.0, 2.0, 3.0, 4.0])
>>> out = io.StringIO()
>>> bar = Progress(1000, out, clock=lambda: next(t), every_s=1.5, tty=False)
>>> bar(500); bar(500); bar.close()
>>> print(out.getvalue().strip())
backtest  50%      500/1,000 rows  250 rows/s  ETA 0:02
backtest 100%    1,000/1,000 rows  250 rows/s  in 0:04
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 0.25,
        tty: bool | None = None,
        label: str = "backtest",
    ) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.clock = clock
        self.every_s = every_s
        self.tty = stream.isatty() if tty is None else tty
        self.label = label
        self.started = clock()
        self._last = self.started
        self._closed = False

    def __call__(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self._draw(now, final=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._draw(self.clock(), final=True)
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float, *, final: bool) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total
        tail = f"in {_hms(elapsed)}" if final else f"ETA {_hms((self.total - self.done) / rate) if rate else '?'}"
        line = f"{self.label} {pct:3.0f}% {self.done:>8,}/{self.total:,} rows  {rate:,.0f} rows/s  {tail}"
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()


def _hms(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
