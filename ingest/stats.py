"""Counters of the ingest path, read by the service's /metrics and the dashboard's health view."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IngestStats:
    received: int = 0  # messages fed
    accepted: int = 0  # passed validation and sequencing (released now, held, or applied late)
    released: int = 0  # Readings handed on
    rejected: dict[str, int] = field(default_factory=dict)  # by reason (ingest.rejection.REASONS)
    duplicates: int = 0  # also counted in rejected["duplicate"]
    resets: int = 0  # running-total counter resets (midnight, reboot)
    restarts: int = 0  # sensor reboots: the sequence number fell back, or a gap too wide to be lost messages
    missing: int = 0  # sequence numbers given up on after the lateness window
    late_applied: int = 0  # interval counts that arrived after their gap was given up, still applied
    baselines: int = 0  # first running total of a stream: sets the baseline, yields no flow
    held: int = 0  # messages waiting for a gap right now

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "released": self.released,
            "rejected": dict(self.rejected),
            "rejected_total": self.rejected_total,
            "duplicates": self.duplicates,
            "resets": self.resets,
            "restarts": self.restarts,
            "missing": self.missing,
            "late_applied": self.late_applied,
            "baselines": self.baselines,
            "held": self.held,
        }
