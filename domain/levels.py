"""The four legal warning levels (IV blue .. I red), ordered by severity so that max() picks the worst."""

from __future__ import annotations

from enum import IntEnum


class Level(IntEnum):
    NORMAL = 0
    IV = 1  # blue, least severe
    III = 2  # yellow
    II = 3  # orange
    I = 4  # noqa: E741  red, most severe (the law numbers levels from I = worst)

    @property
    def colour(self) -> str:
        return _COLOURS[self]

    @property
    def colour_name(self) -> str:
        return _COLOUR_NAMES[self]

    @property
    def label(self) -> str:
        """What a person reads: 'II orange', or 'normal'."""
        return "normal" if self is Level.NORMAL else f"{self.name} {self.colour_name}"

    @classmethod
    def parse(cls, text: str) -> Level:
        """Accept 'II', 'orange', 'II orange' or the numeric severity '3'."""
        t = text.strip().lower()
        for lv in cls:
            if t in (lv.name.lower(), lv.colour_name, lv.label.lower(), str(int(lv))):
                return lv
        raise ValueError(f"unknown level {text!r}: use one of IV/blue, III/yellow, II/orange, I/red, normal")


_COLOURS = {
    Level.NORMAL: "#2e7d32",
    Level.IV: "#1e88e5",
    Level.III: "#fdd835",
    Level.II: "#fb8c00",
    Level.I: "#e53935",
}
_COLOUR_NAMES = {
    Level.NORMAL: "green",
    Level.IV: "blue",
    Level.III: "yellow",
    Level.II: "orange",
    Level.I: "red",
}

# Thresholds are listed in the site file in this order.
GRADED: tuple[Level, ...] = (Level.IV, Level.III, Level.II, Level.I)
