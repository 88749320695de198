"""How long, in words someone reading the wall from across the room takes in at once.

>>> how_long(45), how_long(360), how_long(7500)
('45 s', '6 min', '2 h 05 min')
"""

from __future__ import annotations


def how_long(seconds: float) -> str:
    """Seconds below 90 s, whole minutes below two hours, hours and minutes after that."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
