"""What a batch produced, per filter."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FilterOutcome:
    """One filter's results on one batch.

    matches: (index into the batch, score). A filter matches when it returns True
        (score 1.0) or a finite number greater than 0 (that number is the score).
    errors: (index, message) for alerts on which the filter raised or returned
        something other than a bool or a finite number.
    timeouts: calls interrupted by the soft per-call timer.
    kills: (filter, alert) pairs of this batch found to kill a worker.
    cpu_seconds: CPU time spent in this filter's calls in this batch.
    disabled: why the filter is switched off, or None; stays set until
        SandboxPool.enable() or a new version of the source.
    offending_id: diaSourceId of the alert that got the filter disabled or, while it
        is enabled, of the alert behind this batch's latest kill; None otherwise.
    """

    matches: list[tuple[int, float]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    timeouts: int = 0
    kills: int = 0
    cpu_seconds: float = 0.0
    disabled: str | None = None
    offending_id: int | None = None


@dataclass
class BatchResult:
    """Outcomes by filter id, for every filter in the active set."""

    outcomes: dict[str, FilterOutcome]
    elapsed_s: float = 0.0
